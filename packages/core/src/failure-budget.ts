const MINUTE_MS = 60_000
const HOUR_MS = 3_600_000

/** One client's two fixed windows of failed authentications. */
interface Windows {
  minuteStartMs: number
  minuteCount: number
  hourStartMs: number
  hourCount: number
}

/**
 * A point spent before a store lookup, to give back when the lookup shows it was
 * no failure: a key that verified, or a store that failed. It remembers the
 * windows it was spent in, so it is never given back into a later one.
 */
export interface Reservation {
  readonly client: string
  readonly minuteStartMs: number
  readonly hourStartMs: number
}

export interface FailureBudgetOptions {
  readonly perMinute: number
  readonly perHour: number
  /** Most clients counted at once; the one whose windows began longest ago is forgotten first. */
  readonly maxClients: number
  /** How long a key ID this process verified keeps its way to the store past its address's budget. */
  readonly trustVerifiedMs: number
  /** Most key IDs remembered as verified. */
  readonly maxTrustedKeys: number
  readonly now: () => number
}

/**
 * The failed-authentication budget of each client address. It keeps garbage
 * away from the store and never refuses what verifies:
 * - only failures count: a key that verifies, a store or limiter that fails,
 *   gives back what its lookup spent in advance;
 * - a lookup that joins one already in flight for the same key ID costs the
 *   store nothing, so it spends nothing in advance (concurrent first requests
 *   of one key are one lookup and one point, given back);
 * - a key ID this process verified within `trustVerifiedMs` reaches its cache
 *   entry or the store whatever its address has spent: one lookup per key ID
 *   per cache TTL at most, single-flight, so garbage cannot use it to reach the
 *   store more often.
 */
export class FailureBudget {
  readonly #clients = new Map<string, Windows>()
  readonly #trusted = new Map<string, number>()
  readonly #inFlight = new Map<string, number>()
  readonly #options: FailureBudgetOptions

  constructor(options: FailureBudgetOptions) {
    this.#options = options
  }

  get trackedClients(): number {
    return this.#clients.size
  }

  /** Wait (ms) before the client's windows have room, or 0 when they have. Writes nothing. */
  #wait(windows: Windows | undefined, nowMs: number): number {
    if (windows === undefined) return 0
    const { perMinute, perHour } = this.#options
    const minuteLive = nowMs >= windows.minuteStartMs && nowMs < windows.minuteStartMs + MINUTE_MS
    const hourLive = nowMs >= windows.hourStartMs && nowMs < windows.hourStartMs + HOUR_MS
    const minuteWait = minuteLive && windows.minuteCount >= perMinute ? windows.minuteStartMs + MINUTE_MS - nowMs : 0
    const hourWait = hourLive && windows.hourCount >= perHour ? windows.hourStartMs + HOUR_MS - nowMs : 0
    return minuteWait > hourWait ? minuteWait : hourWait
  }

  /** Counts one failure when both windows have room (a refused one writes nothing). Returns 0, or how long until there is room. */
  #hit(client: string, nowMs: number): number {
    let windows = this.#clients.get(client)
    const wait = this.#wait(windows, nowMs)
    if (wait > 0) return wait
    if (windows === undefined) {
      if (this.#clients.size >= this.#options.maxClients)
        this.#clients.delete(this.#clients.keys().next().value as string)
      windows = { minuteStartMs: nowMs, minuteCount: 0, hourStartMs: nowMs, hourCount: 0 }
      this.#clients.set(client, windows)
    }
    if (!(nowMs >= windows.hourStartMs && nowMs < windows.hourStartMs + HOUR_MS)) {
      windows.hourStartMs = nowMs
      windows.hourCount = 0
      // Re-inserted: insertion order stays hour-start order, for eviction.
      this.#clients.delete(client)
      this.#clients.set(client, windows)
    }
    if (!(nowMs >= windows.minuteStartMs && nowMs < windows.minuteStartMs + MINUTE_MS)) {
      windows.minuteStartMs = nowMs
      windows.minuteCount = 0
    }
    windows.minuteCount++
    windows.hourCount++
    return 0
  }

  /**
   * Counts a failure that happened; returns 0, or how long the client must wait (answer 429 instead of 401).
   * `nowMs`: the time, when the caller read this budget's clock already.
   */
  fail(client: string, nowMs: number = this.#options.now()): number {
    return this.#hit(client, nowMs)
  }

  /** Whether a client is over budget now, without counting anything. */
  waitMs(client: string): number {
    return this.#wait(this.#clients.get(client), this.#options.now())
  }

  /**
   * Before a store lookup of `keyId` for `client`: null when it may go ahead
   * with nothing spent (a key ID verified here recently, or a lookup of it
   * already in flight), a Reservation when it spent one point in advance, or
   * the wait (ms) when the client is over budget.
   */
  reserve(client: string, keyId: string): Reservation | number | null {
    const nowMs = this.#options.now()
    if (this.#inFlight.has(keyId) || this.isTrusted(keyId, nowMs)) return null
    return this.#spend(client, nowMs)
  }

  /** Spends one point in advance: the Reservation to give it back with, or the wait (ms) when over budget. */
  spend(client: string): Reservation | number {
    return this.#spend(client, this.#options.now())
  }

  #spend(client: string, nowMs: number): Reservation | number {
    const wait = this.#hit(client, nowMs)
    if (wait > 0) return wait
    const windows = this.#clients.get(client)!
    return { client, minuteStartMs: windows.minuteStartMs, hourStartMs: windows.hourStartMs }
  }

  /** Gives back a point spent in advance, into the windows it was spent in only. */
  refund(reservation: Reservation): void {
    const windows = this.#clients.get(reservation.client)
    if (windows === undefined) return
    if (windows.minuteStartMs === reservation.minuteStartMs && windows.minuteCount > 0) windows.minuteCount--
    if (windows.hourStartMs === reservation.hourStartMs && windows.hourCount > 0) windows.hourCount--
  }

  /** Marks a lookup of `keyId` as in flight until the returned function is called. */
  lookupStarted(keyId: string): () => void {
    this.#inFlight.set(keyId, (this.#inFlight.get(keyId) ?? 0) + 1)
    let done = false
    return () => {
      if (done) return
      done = true
      const left = (this.#inFlight.get(keyId) ?? 1) - 1
      if (left === 0) this.#inFlight.delete(keyId)
      else this.#inFlight.set(keyId, left)
    }
  }

  /** Remembers that `keyId` verified now. Cheap when called on every request: writes at most once a second per key. */
  verified(keyId: string, nowMs: number): void {
    const last = this.#trusted.get(keyId)
    if (last !== undefined && nowMs - last < 1_000 && nowMs >= last) return
    if (last !== undefined) this.#trusted.delete(keyId)
    else if (this.#trusted.size >= this.#options.maxTrustedKeys)
      this.#trusted.delete(this.#trusted.keys().next().value as string)
    this.#trusted.set(keyId, nowMs)
  }

  /** Forgets a key ID (revoked, or no longer found). */
  distrust(keyId: string): void {
    this.#trusted.delete(keyId)
  }

  isTrusted(keyId: string, nowMs: number = this.#options.now()): boolean {
    const last = this.#trusted.get(keyId)
    return last !== undefined && nowMs - last < this.#options.trustVerifiedMs && nowMs >= last
  }
}
