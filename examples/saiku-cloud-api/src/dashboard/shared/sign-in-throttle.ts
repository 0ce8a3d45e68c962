// The sign-in budgets. An attempt is charged before its password is checked
// (so concurrent attempts cannot all pass one check of the budget) and given
// back when it turns out not to be a failure: a right password, or a check the
// server could not run. Following OWASP, an account is throttled, never locked:
// - per client address, whatever the account;
// - per account and address: the budget an attacker at one address spends;
// - per account, across addresses: looser, against attacks spread over many
//   addresses. A browser that signed in to the account before (a device
//   cookie) is let through this one, so nobody can keep a member out by
//   knowing their email; the device has a budget of its own instead, so a
//   stolen device cookie buys only a few guesses.

const MINUTE_MS = 60_000
const HOUR_MS = 3_600_000

export interface SignInBudget {
  readonly perMinute: number
  readonly perHour: number
}

export type SignInScope = 'address' | 'accountAddress' | 'account' | 'device'

/** Failures allowed before sign-in answers 429, by scope. */
export const SIGN_IN_BUDGETS: Readonly<Record<SignInScope, SignInBudget>> = Object.freeze({
  address: Object.freeze({ perMinute: 10, perHour: 100 }),
  accountAddress: Object.freeze({ perMinute: 5, perHour: 20 }),
  account: Object.freeze({ perMinute: 20, perHour: 100 }),
  device: Object.freeze({ perMinute: 5, perHour: 20 }),
})

/** One key's two fixed windows. */
interface Windows {
  minuteStartMs: number
  minuteCount: number
  hourStartMs: number
  hourCount: number
}

/** Where one charge went, so it is given back into the windows it was spent in, never a later one. */
interface Charge {
  readonly scope: SignInScope
  readonly key: string
  readonly minuteStartMs: number
  readonly hourStartMs: number
}

/** What an attempt spent; settle it once. */
export interface SignInReservation {
  readonly charges: readonly Charge[]
  /** The device cookie counted instead of the account-wide budget. */
  readonly trustedDevice: boolean
  settled: boolean
}

export type SignInVerdict =
  | { readonly admitted: true; readonly reservation: SignInReservation }
  | {
      readonly admitted: false
      /** How long until every budget the attempt needs has room. */
      readonly retryAfterMs: number
      /** The budgets with no room: `address` alone says nothing about the account. */
      readonly scopes: readonly SignInScope[]
    }

export interface SignInAttempt {
  /** The client's address bucket (`clientKey`). */
  readonly address: string
  /** The account the attempt names (the email as typed, trimmed and lower-cased); null when the request named none. */
  readonly account: string | null
  /** The device cookie's ID, when the browser holds a valid one for this account. */
  readonly device: string | null
}

export interface SignInThrottleOptions {
  /**
   * Most keys counted per scope; the one seen least recently is forgotten first. Default 100000.
   * A key whose charges were all given back is forgotten at once.
   */
  readonly maxKeys?: number
  readonly now?: () => number
}

export class SignInThrottle {
  readonly #scopes = new Map<SignInScope, Map<string, Windows>>()
  readonly #maxKeys: number
  readonly #now: () => number

  constructor(options: SignInThrottleOptions = {}) {
    this.#maxKeys = options.maxKeys ?? 100_000
    this.#now = options.now ?? Date.now
    for (const scope of Object.keys(SIGN_IN_BUDGETS) as SignInScope[]) this.#scopes.set(scope, new Map())
  }

  /** Wait (ms) until the key has room in both windows: 0 when it has. */
  #wait(scope: SignInScope, key: string, nowMs: number): number {
    const windows = this.#scopes.get(scope)!.get(key)
    if (windows === undefined) return 0
    const { perMinute, perHour } = SIGN_IN_BUDGETS[scope]
    const minuteWait =
      nowMs < windows.minuteStartMs + MINUTE_MS && windows.minuteCount >= perMinute
        ? windows.minuteStartMs + MINUTE_MS - nowMs
        : 0
    const hourWait =
      nowMs < windows.hourStartMs + HOUR_MS && windows.hourCount >= perHour ? windows.hourStartMs + HOUR_MS - nowMs : 0
    return Math.max(minuteWait, hourWait)
  }

  #charge(scope: SignInScope, key: string, nowMs: number): Charge {
    const map = this.#scopes.get(scope)!
    let windows = map.get(key)
    if (windows === undefined) {
      if (map.size >= this.#maxKeys) map.delete(map.keys().next().value as string)
      windows = { minuteStartMs: nowMs, minuteCount: 0, hourStartMs: nowMs, hourCount: 0 }
    } else map.delete(key) // re-inserted below: the map's order is the order of last sight
    map.set(key, windows)
    if (nowMs >= windows.minuteStartMs + MINUTE_MS) {
      windows.minuteStartMs = nowMs
      windows.minuteCount = 0
    }
    if (nowMs >= windows.hourStartMs + HOUR_MS) {
      windows.hourStartMs = nowMs
      windows.hourCount = 0
    }
    windows.minuteCount++
    windows.hourCount++
    return { scope, key, minuteStartMs: windows.minuteStartMs, hourStartMs: windows.hourStartMs }
  }

  /**
   * Charges the attempt to every budget it needs, or to none when one has no
   * room (then nothing is checked: the answer is 429). Synchronous, so two
   * concurrent attempts never both take the last place.
   */
  reserve(attempt: SignInAttempt): SignInVerdict {
    const nowMs = this.#now()
    const needed: [SignInScope, string][] = [['address', attempt.address]]
    let trustedDevice = false
    if (attempt.account !== null) {
      needed.push(['accountAddress', `${attempt.account}\n${attempt.address}`])
      // A known device passes the account-wide budget while its own has room; then it is a stranger again.
      trustedDevice = attempt.device !== null && this.#wait('device', attempt.device, nowMs) === 0
      needed.push(trustedDevice ? ['device', attempt.device!] : ['account', attempt.account])
    }
    let retryAfterMs = 0
    const full: SignInScope[] = []
    for (const [scope, key] of needed) {
      const wait = this.#wait(scope, key, nowMs)
      if (wait > 0) {
        full.push(scope)
        retryAfterMs = Math.max(retryAfterMs, wait)
      }
    }
    if (full.length > 0) return { admitted: false, retryAfterMs, scopes: full }
    const charges = needed.map(([scope, key]) => this.#charge(scope, key, nowMs))
    return { admitted: true, reservation: { charges, trustedDevice, settled: false } }
  }

  /**
   * `failure` keeps the charges; `success` (the right password) and `unchecked`
   * (the check could not run) give them back, into the windows they were spent
   * in only. A second settle does nothing.
   */
  settle(reservation: SignInReservation, outcome: 'failure' | 'success' | 'unchecked'): void {
    if (reservation.settled) return
    reservation.settled = true
    if (outcome === 'failure') return
    for (const charge of reservation.charges) {
      const keys = this.#scopes.get(charge.scope)!
      const windows = keys.get(charge.key)
      if (windows === undefined) continue
      if (windows.minuteStartMs === charge.minuteStartMs && windows.minuteCount > 0) windows.minuteCount--
      if (windows.hourStartMs === charge.hourStartMs && windows.hourCount > 0) windows.hourCount--
      // Nothing left counting: forgotten, so attempts given back (a busy server's 503s, which cost no hash)
      // cannot fill the map and push out the keys of budgets still spent.
      if (windows.minuteCount === 0 && windows.hourCount === 0) keys.delete(charge.key)
    }
  }
}

/** "1 minute", "2 minutes": a wait in whole minutes, rounded up, at least one. */
export function minutesText(waitMs: number): string {
  const minutes = Math.max(1, Math.ceil(waitMs / MINUTE_MS))
  return minutes === 1 ? '1 minute' : `${minutes} minutes`
}
