import { describe, expect, it } from 'vitest'
import { distanceOf, median } from '../bench/stats.js'

describe('the benchmark’s distance to the floor', () => {
  it('is the mean of per-round differences, with the half-width of its 95 % interval and the median', () => {
    // Mean 2, sample variance 2.5 over 5 rounds: 1.96 × √2.5 / √5.
    const distance = distanceOf([0, 1, 2, 3, 4])
    expect(distance.meanMicros).toBe(2)
    expect(distance.plusMinusMicros).toBeCloseTo(1.96 * Math.sqrt(0.5), 12)
    expect(distance.medianMicros).toBe(2)
  })

  it('keeps a collection’s pause out of the median but in the mean', () => {
    const distance = distanceOf([1, 1, 1, 1, 96])
    expect(distance.medianMicros).toBe(1)
    expect(distance.meanMicros).toBe(20)
  })

  it('takes the middle pair’s mean as the median of an even count', () => {
    expect(median([4, 1, 3, 2])).toBe(2.5)
  })
})
