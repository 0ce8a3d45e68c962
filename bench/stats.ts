// The few statistics the benchmark reports.

export const mean = (values: readonly number[]): number => values.reduce((sum, v) => sum + v, 0) / values.length

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

/** A distance in CPU µs per request: the mean over rounds with its 95 % interval, and the median. */
export interface Distance {
  readonly meanMicros: number
  /** Half the width of the 95 % confidence interval of the mean (rounds are many: the normal quantile). */
  readonly plusMinusMicros: number
  /** What a round without a collection shows: the collector's pauses land on one batch of a round, at random. */
  readonly medianMicros: number
}

/** Mean, 95 % interval and median of per-round differences. */
export function distanceOf(differences: readonly number[]): Distance {
  const m = mean(differences)
  const variance = differences.reduce((sum, v) => sum + (v - m) ** 2, 0) / Math.max(1, differences.length - 1)
  return {
    meanMicros: m,
    plusMinusMicros: (1.96 * Math.sqrt(variance)) / Math.sqrt(differences.length),
    medianMicros: median(differences),
  }
}
