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
 * counted (12 numbers with K = 10; 24 for both windows), whatever the traffic.
 *
 * A clock that steps back keeps counting into the newest sub-window counted, so
 * nothing is forgotten early. A refused request writes nothing.
 */

/** Sub-windows per window. The Redis script holds the same number. */
export const ROLLING_SUBWINDOWS = 10
const SLOTS = ROLLING_SUBWINDOWS + 1

/**
 * Both rolling windows of a tenant in one array of 24 numbers, the minute's at
 * offset 0 and the hour's at offset 12: per window, the newest sub-window counted
 * (-1 before the first admitted request), then sub-window i's count at
 * `1 + i % 11` for i from that index less 10 up to it. One array of small
 * integers is the least V8 holds for them.
 */
export type RollingState = number[]
export const MINUTE_OFFSET = 0
export const HOUR_OFFSET = SLOTS + 1

export function newRollingState(): RollingState {
  return [-1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/** The sub-window a request at `nowMs` counts in: never older than the newest counted. */
export function currentIndex(state: RollingState, offset: number, nowMs: number, widthMs: number): number {
  const index = Math.floor(nowMs / widthMs)
  const newest = state[offset]!
  return index > newest ? index : newest
}

/** What sub-windows `from` up to the newest counted hold. */
function sumFrom(state: RollingState, offset: number, from: number): number {
  const newest = state[offset]!
  if (newest < 0) return 0
  const oldest = newest - ROLLING_SUBWINDOWS
  let total = 0
  for (let i = from > oldest ? from : oldest; i <= newest; i++) total += state[offset + 1 + (i % SLOTS)]!
  return total
}

/** What the window counts at sub-window `current`. */
export function usedAt(state: RollingState, offset: number, current: number): number {
  return sumFrom(state, offset, current - ROLLING_SUBWINDOWS)
}

/**
 * How long until the window has room for `cost` within `limit` (0: it has), with
 * no more requests admitted meanwhile: the true earliest admission time. A cost
 * above the limit waits until everything counted has dropped out.
 */
export function waitMs(
  state: RollingState,
  offset: number,
  current: number,
  nowMs: number,
  widthMs: number,
  limit: number,
  cost: number,
): number {
  if (usedAt(state, offset, current) + cost <= limit) return 0
  for (let step = 1; step <= ROLLING_SUBWINDOWS; step++) {
    if (sumFrom(state, offset, current - ROLLING_SUBWINDOWS + step) + cost <= limit)
      return (current + step) * widthMs - nowMs
  }
  return (current + SLOTS) * widthMs - nowMs
}

/** Until everything the window counts has dropped out (its whole limit is back); `lengthMs` when it counts nothing. */
export function fullResetMs(
  state: RollingState,
  offset: number,
  current: number,
  nowMs: number,
  widthMs: number,
  lengthMs: number,
): number {
  const newest = state[offset]!
  if (newest < 0) return lengthMs
  const oldest = Math.max(current - ROLLING_SUBWINDOWS, newest - ROLLING_SUBWINDOWS)
  for (let i = newest; i >= oldest; i--) {
    if (state[offset + 1 + (i % SLOTS)]! > 0) return (i + SLOTS) * widthMs - nowMs
  }
  return lengthMs
}

/** Counts `cost` in sub-window `current`, clearing the sub-windows that fell out since the newest counted. */
export function countIn(state: RollingState, offset: number, current: number, cost: number): void {
  const newest = state[offset]!
  if (newest < 0 || current - newest >= SLOTS) state.fill(0, offset + 1, offset + 1 + SLOTS)
  else for (let i = newest + 1; i <= current; i++) state[offset + 1 + (i % SLOTS)] = 0
  state[offset] = current
  state[offset + 1 + (current % SLOTS)]! += cost
}
