/**
 * Rolling windows, counted in sub-windows.
 *
 * A window of length W is cut into K sub-windows of W/K, aligned on the epoch.
 * A request at time t is counted against the sub-window it falls in and the K
 * before it, the oldest counted whole: so everything admitted within the last W
 * (and up to W/K more) counts. Hence:
 *
 * - no span of W ever admits more than the limit L: the last request admitted in
 *   such a span saw every earlier one of the span counted;
 * - a client sending evenly at K/(K+1) of L/W or less is never refused: the
 *   counted span is shorter than W + W/K, which holds at most L of its requests.
 *
 * Per window the state is K+1 counts and the index of the newest sub-window
 * counted (12 numbers with K = 10), whatever the traffic.
 *
 * A clock that steps back keeps counting into the newest sub-window counted, so
 * nothing is forgotten early. A refused request writes nothing.
 */

/** Sub-windows per window. The Redis script holds the same number. */
export const ROLLING_SUBWINDOWS = 10
const SLOTS = ROLLING_SUBWINDOWS + 1

/** One rolling window: `counts[i % SLOTS]` is sub-window i's count for i in [index - K, index]. */
export interface RollingWindow {
  /** Newest sub-window counted; -1 before the first admitted request. */
  index: number
  readonly counts: Float64Array
}

export function newRollingWindow(): RollingWindow {
  return { index: -1, counts: new Float64Array(SLOTS) }
}

/** The sub-window a request at `nowMs` counts in: never older than the newest counted. */
export function currentIndex(window: RollingWindow, nowMs: number, widthMs: number): number {
  const index = Math.floor(nowMs / widthMs)
  return index > window.index ? index : window.index
}

/** What sub-windows `from` up to the newest counted hold. */
function sumFrom(window: RollingWindow, from: number): number {
  if (window.index < 0) return 0
  const oldest = window.index - ROLLING_SUBWINDOWS
  let total = 0
  for (let i = from > oldest ? from : oldest; i <= window.index; i++) total += window.counts[i % SLOTS]!
  return total
}

/** What the window counts at sub-window `current`. */
export function usedAt(window: RollingWindow, current: number): number {
  return sumFrom(window, current - ROLLING_SUBWINDOWS)
}

/**
 * How long until the window has room for `cost` within `limit` (0: it has), with
 * no more requests admitted meanwhile: the true earliest admission time. A cost
 * above the limit waits until everything counted has dropped out.
 */
export function waitMs(window: RollingWindow, current: number, nowMs: number, widthMs: number, limit: number, cost: number): number {
  if (usedAt(window, current) + cost <= limit) return 0
  for (let step = 1; step <= ROLLING_SUBWINDOWS; step++) {
    if (sumFrom(window, current - ROLLING_SUBWINDOWS + step) + cost <= limit) return (current + step) * widthMs - nowMs
  }
  return (current + SLOTS) * widthMs - nowMs
}

/** Until everything the window counts has dropped out (its whole limit is back); `lengthMs` when it counts nothing. */
export function fullResetMs(window: RollingWindow, current: number, nowMs: number, widthMs: number, lengthMs: number): number {
  if (window.index < 0) return lengthMs
  const oldest = Math.max(current - ROLLING_SUBWINDOWS, window.index - ROLLING_SUBWINDOWS)
  for (let i = window.index; i >= oldest; i--) {
    if (window.counts[i % SLOTS]! > 0) return (i + SLOTS) * widthMs - nowMs
  }
  return lengthMs
}

/** Counts `cost` in sub-window `current`, clearing the sub-windows that fell out since the newest counted. */
export function countIn(window: RollingWindow, current: number, cost: number): void {
  if (window.index < 0 || current - window.index >= SLOTS) window.counts.fill(0)
  else for (let i = window.index + 1; i <= current; i++) window.counts[i % SLOTS] = 0
  window.index = current
  window.counts[current % SLOTS]! += cost
}
