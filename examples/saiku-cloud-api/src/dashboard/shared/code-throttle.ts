// The budget of one-time codes and re-authentication checks, per member account. It names the member, never
// the browser or the address, so no device cookie and no change of address buys more guesses:
// - one sign-in (a password step passed) gets CODES_PER_SIGN_IN wrong codes, then the member is sent back to
//   the password step, which has budgets of its own;
// - an account gets CODES_PER_HOUR wrong codes (and re-authentication passwords) in an hour, whatever the
//   sign-ins; then the code step is locked until that hour is over.
// Like the sign-in budgets, an attempt is charged before it is checked, synchronously, so concurrent wrong
// codes cannot all pass one look at the budget, and it is given back when it was right.

const HOUR_MS = 3_600_000
/** A throttled account's Activity gets at most one line this often. */
const THROTTLE_RECORD_INTERVAL_MS = 60_000

export const CODES_PER_SIGN_IN = 5
export const CODES_PER_HOUR = 10

export interface CodeReservation {
  readonly memberId: string
  readonly attempt: string | null
  readonly hourStartMs: number
  settled: boolean
}

export type CodeVerdict =
  | { readonly admitted: true; readonly reservation: CodeReservation }
  /** `hour`: the account's hour is spent (retry after `retryAfterMs`); `attempt`: this sign-in's codes are. */
  | { readonly admitted: false; readonly scope: 'hour' | 'attempt'; readonly retryAfterMs: number }

export interface CodeThrottleOptions {
  readonly now?: () => number
  /**
   * Accounts and sign-ins remembered; the account whose hour started first, and the sign-in charged least
   * recently, are forgotten first. Only an account with a check not given back takes a place. Default 100000.
   */
  readonly maxKeys?: number
}

export class CodeThrottle {
  readonly #hours = new Map<string, { startMs: number; count: number }>()
  readonly #attempts = new Map<string, number>()
  readonly #recorded = new Map<string, number>()
  readonly #now: () => number
  readonly #maxKeys: number

  constructor(options: CodeThrottleOptions = {}) {
    this.#now = options.now ?? Date.now
    this.#maxKeys = options.maxKeys ?? 100_000
  }

  /** The account's hour window as of `nowMs`: a window that is over counts nothing. */
  #hour(memberId: string, nowMs: number) {
    const hour = this.#hours.get(memberId)
    return hour === undefined || nowMs >= hour.startMs + HOUR_MS ? null : hour
  }

  /**
   * Charges one check to the account (and to the sign-in `attempt`, the pending session, when given), or
   * refuses it without charging when either budget is spent.
   */
  reserve(memberId: string, attempt: string | null): CodeVerdict {
    const nowMs = this.#now()
    let hour = this.#hour(memberId, nowMs)
    if (hour !== null && hour.count >= CODES_PER_HOUR)
      return { admitted: false, scope: 'hour', retryAfterMs: hour.startMs + HOUR_MS - nowMs }
    if (attempt !== null && (this.#attempts.get(attempt) ?? 0) >= CODES_PER_SIGN_IN)
      return { admitted: false, scope: 'attempt', retryAfterMs: 0 }
    if (hour === null) {
      hour = { startMs: nowMs, count: 0 }
      this.#hours.delete(memberId)
      if (this.#hours.size >= this.#maxKeys) this.#hours.delete(this.#hours.keys().next().value as string)
      this.#hours.set(memberId, hour)
    }
    hour.count++
    if (attempt !== null) {
      const used = this.#attempts.get(attempt) ?? 0
      this.#attempts.delete(attempt)
      if (this.#attempts.size >= this.#maxKeys) this.#attempts.delete(this.#attempts.keys().next().value as string)
      this.#attempts.set(attempt, used + 1)
    }
    return { admitted: true, reservation: { memberId, attempt, hourStartMs: hour.startMs, settled: false } }
  }

  /** `failure` keeps the charge; `success` gives it back, into the hour it was spent in only. Once. */
  settle(reservation: CodeReservation, outcome: 'failure' | 'success'): void {
    if (reservation.settled) return
    reservation.settled = true
    if (outcome === 'failure') return
    const hour = this.#hours.get(reservation.memberId)
    if (hour !== undefined && hour.startMs === reservation.hourStartMs && hour.count > 0) {
      hour.count--
      // Nothing left charged: forgotten, so accounts that pass their checks never push a locked one out of
      // the bound (the next charge starts a new hour, never an earlier end to one).
      if (hour.count === 0) this.#hours.delete(reservation.memberId)
    }
    if (reservation.attempt !== null) this.#attempts.delete(reservation.attempt)
  }

  /** Wrong codes this sign-in has left. */
  attemptsLeft(attempt: string): number {
    return Math.max(0, CODES_PER_SIGN_IN - (this.#attempts.get(attempt) ?? 0))
  }

  /** Whether a refused check of this account goes to Activity now: true at most once a minute per account. */
  shouldRecordRefusal(memberId: string): boolean {
    const nowMs = this.#now()
    const last = this.#recorded.get(memberId)
    if (last !== undefined && nowMs - last < THROTTLE_RECORD_INTERVAL_MS) return false
    this.#recorded.delete(memberId)
    if (this.#recorded.size >= this.#maxKeys) this.#recorded.delete(this.#recorded.keys().next().value as string)
    this.#recorded.set(memberId, nowMs)
    return true
  }

  /** The sign-in is over (signed in, or sent back to the password step): its count is dropped. */
  forgetAttempt(attempt: string): void {
    this.#attempts.delete(attempt)
  }
}
