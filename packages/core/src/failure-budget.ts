const MINUTE_MS = 60_000
const HOUR_MS = 3_600_000

/** One address's fixed windows: its failures, the failures that cost a store lookup, and the allowance spent. */
interface Windows {
  minuteStartMs: number
  hourStartMs: number
  /** Every failure: past the budget, failures are answered 429 instead of 401. */
  failuresMinute: number
  failuresHour: number
  /** Failures whose answer took a store lookup: past the budget, the store is closed to the address but for its allowance. */
  lookupFailuresMinute: number
  lookupFailuresHour: number
  /** Store lookups started over budget this minute, from the allowance. */
  allowanceSpent: number
}

/** An address's store lookups in flight, and the lookups queued for a place among them. */
interface Lookups {
  inFlight: number
  readonly queue: Waiter[]
}

interface Waiter {
  readonly keyId: string
  readonly singleFlight: boolean
  readonly resolve: (gate: Gate) => void
  timer: ReturnType<typeof setTimeout> | undefined
}

/** How a store call that a lookup started ended: a record found, none, or the store failed. */
export type StoreCallEnd = 'found' | 'absent' | 'failed'

/**
 * What the budget says of a store lookup:
 * - `free`: it needs no place (a key ID trusted here, or one another request is waiting on, joined);
 * - `slot`: it may start a store call, holding one of its address's places until that call settles;
 * - `over`: the address is past its budget and its allowance: 429 `too_many_failures`, `waitMs` until the allowance refills;
 * - `busy`: the address has its most lookups in flight and queued: 503, `waitMs` a hint for Retry-After.
 */
export type Gate =
  | { readonly kind: 'free' }
  | { readonly kind: 'slot'; readonly slot: LookupSlot }
  | { readonly kind: 'over'; readonly waitMs: number }
  | { readonly kind: 'busy'; readonly waitMs: number }

const FREE: Gate = Object.freeze({ kind: 'free' })

export interface FailureBudgetOptions {
  readonly perMinute: number
  readonly perHour: number
  /** Most addresses counted at once; the one whose windows began longest ago is forgotten first. */
  readonly maxClients: number
  /** How long a key ID admitted here keeps its way to the store past its address's budget. */
  readonly trustVerifiedMs: number
  /** Most key IDs trusted at once, shared among tenants (see `TrustList`). */
  readonly maxTrustedKeys: number
  /** Most store lookups one address has in flight; a timed-out one holds its place until its store call settles. */
  readonly maxLookupsInFlight: number
  /** Store lookups an address over budget may still start each minute, across all key IDs. */
  readonly lookupsOverBudgetPerMinute: number
  /** Most lookups one address may have queued for a place in flight; past it, 503. */
  readonly maxQueuedLookups: number
  /** How long a queued lookup waits for a place before its 503. */
  readonly queueWaitMs: number
  readonly now: () => number
}

/**
 * A place among an address's store lookups in flight. It is given back when the
 * store call settles, not when the request stops waiting for it: a lookup that
 * timed out keeps its place, so abandoned store calls stay bounded.
 */
export class LookupSlot {
  readonly #budget: FailureBudget
  readonly #client: string
  readonly #keyId: string
  /** The minute an allowance point was spent in (the address was over budget), given back there if the key verifies. */
  #allowanceMinuteMs: number | null
  #held = false
  #released = false
  #abandoned = false
  /** The request's answer was counted (or it gave up waiting): the place may go once the store call settles too. */
  #answered = false
  #callEnded = false
  #keyDone = false

  constructor(budget: FailureBudget, client: string, keyId: string, allowanceMinuteMs: number | null) {
    this.#budget = budget
    this.#client = client
    this.#keyId = keyId
    this.#allowanceMinuteMs = allowanceMinuteMs
  }

  get keyId(): string {
    return this.#keyId
  }

  /**
   * Holds the place until the store call settles. A call that ends without a record
   * after its request was answered 503 (`abandon`) was a failed lookup all the
   * same: it is counted then, or a slow store would never close to garbage.
   */
  holdUntil(call: Promise<StoreCallEnd>): void {
    if (this.#held) return
    this.#held = true
    call.then(
      (end) => this.#settled(end),
      () => this.#settled('failed'),
    )
  }

  /** The request stopped waiting (the store failed or timed out): its answer counted nothing. */
  abandon(): void {
    this.#abandoned = true
    this.answered()
  }

  /**
   * The request's answer is counted (a failure charged): only then does the place go to a queued
   * lookup, which must see that failure, or a burst of garbage would outrun the budget.
   */
  answered(): void {
    this.#answered = true
    this.#keyAnswered()
    if (this.#callEnded) this.release()
  }

  /** Later lookups of the key ID join this one only while its request waits: after that the verifier asks afresh. */
  #keyAnswered(): void {
    if (this.#keyDone) return
    this.#keyDone = true
    this.#budget.keyAnswered(this.#keyId)
  }

  /** The key verified: an allowance point it spent comes back (only failures charge). */
  verified(): void {
    if (this.#allowanceMinuteMs === null) return
    this.#budget.refundAllowance(this.#client, this.#allowanceMinuteMs)
    this.#allowanceMinuteMs = null
  }

  /** Gives the place back now: the answer came without a store call, or both it and the call are done. */
  release(): void {
    if (this.#released) return
    this.#released = true
    this.#keyAnswered()
    this.#budget.released(this.#client)
  }

  #settled(end: StoreCallEnd): void {
    if (this.#abandoned && end === 'absent') this.#budget.fail(this.#client, undefined, true)
    this.#callEnded = true
    if (this.#answered) this.release()
  }
}

/**
 * The failed-authentication budget of each client address. It keeps garbage
 * away from the store and never refuses what verifies. Its rules (the reference
 * model in `failure-budget.property.test.ts` states them too):
 * 1. only failures charge it: a lookup spends nothing in advance, so valid keys
 *    never exhaust it, however many arrive at once;
 * 2. an address has at most `maxLookupsInFlight` store calls in flight, and
 *    under budget no more than its budget has room for failures; a lookup that
 *    timed out keeps its place until its store call settles. Past that, lookups
 *    queue (bounded, for `queueWaitMs`), then 503: never "too many failures";
 * 3. over budget (failures that cost a store lookup), the address may still start
 *    `lookupsOverBudgetPerMinute` store lookups a minute across all key IDs, so a
 *    valid key it has not failed with still verifies. A failure the store was not
 *    asked about (a malformed token, a checksum that fails, an answer from the
 *    cache) counts towards the 429 answer, never towards closing the store;
 * 4. a key ID is trusted (its lookups skip the budget, single-flight) once a whole
 *    decision admitted it, for `trustVerifiedMs` or until the key expires, and
 *    loses the trust when it is revoked, expires or changes (`distrust`).
 */
export class FailureBudget {
  readonly #clients = new Map<string, Windows>()
  readonly #lookups = new Map<string, Lookups>()
  readonly #keysInFlight = new Map<string, number>()
  readonly #trusted: TrustList
  readonly #options: FailureBudgetOptions

  constructor(options: FailureBudgetOptions) {
    this.#options = options
    this.#trusted = new TrustList(options.maxTrustedKeys)
  }

  get trackedClients(): number {
    return this.#clients.size
  }

  /** Store lookups in flight for `client`, held until their store calls settle. */
  lookupsInFlight(client: string): number {
    return this.#lookups.get(client)?.inFlight ?? 0
  }

  get trustedKeys(): number {
    return this.#trusted.size
  }

  /** Wait (ms) before `minute`/`hour` counts have room, or 0 when they have. Counts nothing. */
  #wait(windows: Windows | undefined, nowMs: number, lookupSide: boolean): number {
    if (windows === undefined) return 0
    stepBack(windows, nowMs)
    const { perMinute, perHour } = this.#options
    const minute = lookupSide ? windows.lookupFailuresMinute : windows.failuresMinute
    const hour = lookupSide ? windows.lookupFailuresHour : windows.failuresHour
    const minuteWait = minuteLive(windows, nowMs) && minute >= perMinute ? windows.minuteStartMs + MINUTE_MS - nowMs : 0
    const hourWait = hourLive(windows, nowMs) && hour >= perHour ? windows.hourStartMs + HOUR_MS - nowMs : 0
    return minuteWait > hourWait ? minuteWait : hourWait
  }

  /** The address's windows, live at `nowMs` (expired ones restarted), created if need be. */
  #windows(client: string, nowMs: number): Windows {
    let windows = this.#clients.get(client)
    if (windows === undefined) {
      if (this.#clients.size >= this.#options.maxClients)
        this.#clients.delete(this.#clients.keys().next().value as string)
      windows = {
        minuteStartMs: nowMs,
        hourStartMs: nowMs,
        failuresMinute: 0,
        failuresHour: 0,
        lookupFailuresMinute: 0,
        lookupFailuresHour: 0,
        allowanceSpent: 0,
      }
      this.#clients.set(client, windows)
      return windows
    }
    stepBack(windows, nowMs)
    if (!hourLive(windows, nowMs)) {
      windows.hourStartMs = nowMs
      windows.failuresHour = 0
      windows.lookupFailuresHour = 0
      // Re-inserted: insertion order stays hour-start order, for eviction.
      this.#clients.delete(client)
      this.#clients.set(client, windows)
    }
    if (!minuteLive(windows, nowMs)) {
      windows.minuteStartMs = nowMs
      windows.failuresMinute = 0
      windows.lookupFailuresMinute = 0
      windows.allowanceSpent = 0
    }
    return windows
  }

  /**
   * Counts a failure; returns 0, or how long the client must wait (answer 429 instead of 401).
   * `nowMs`: the time, when the caller read this budget's clock already. `viaLookup`: the
   * answer took a store lookup, so it counts towards closing the store too (whatever the answer).
   */
  fail(client: string, nowMs: number = this.#options.now(), viaLookup = false): number {
    const existing = this.#clients.get(client)
    const wait = this.#wait(existing, nowMs, false)
    if (wait > 0 && !viaLookup) return wait
    const windows = this.#windows(client, nowMs)
    if (viaLookup) {
      windows.lookupFailuresMinute++
      windows.lookupFailuresHour++
    }
    if (wait > 0) return wait
    windows.failuresMinute++
    windows.failuresHour++
    return 0
  }

  /** Whether a client is over budget now (its failures), without counting anything. */
  waitMs(client: string): number {
    return this.#wait(this.#clients.get(client), this.#options.now(), false)
  }

  /** Whether the store is closed to a client now, but for its allowance (its failed lookups), without counting anything. */
  lookupWaitMs(client: string): number {
    return this.#wait(this.#clients.get(client), this.#options.now(), true)
  }

  /**
   * Before a store lookup of `keyId` for `client`, what the budget allows (see `Gate`).
   * `singleFlight`: the verifier joins concurrent lookups of one key ID (the default one
   * does; a verifier of the user's promises nothing). A promise when the lookup is queued.
   */
  gate(client: string, keyId: string, singleFlight: boolean): Gate | Promise<Gate> {
    const gate = this.#gate(client, keyId, singleFlight)
    if (gate !== null) return gate
    const lookups = this.#lookups.get(client)!
    if (lookups.queue.length >= this.#options.maxQueuedLookups) return this.#busy()
    return new Promise<Gate>((resolve) => {
      const waiter: Waiter = { keyId, singleFlight, resolve, timer: undefined }
      waiter.timer = setTimeout(() => {
        const at = lookups.queue.indexOf(waiter)
        if (at >= 0) lookups.queue.splice(at, 1)
        this.#forgetIfIdle(client, lookups)
        resolve(this.#busy())
      }, this.#options.queueWaitMs)
      waiter.timer.unref?.()
      lookups.queue.push(waiter)
    })
  }

  #busy(): Gate {
    return { kind: 'busy', waitMs: Math.max(1_000, this.#options.queueWaitMs) }
  }

  /** The gate now, or null: wait in the queue for a place. */
  #gate(client: string, keyId: string, singleFlight: boolean): Gate | null {
    const nowMs = this.#options.now()
    if (this.#trusted.has(keyId, nowMs)) return FREE
    if (singleFlight && this.#keysInFlight.has(keyId)) return FREE
    let lookups = this.#lookups.get(client)
    const inFlight = lookups?.inFlight ?? 0
    if (inFlight >= this.#options.maxLookupsInFlight) return null
    // Bounded like the windows: an address beyond maxClients waits for another's lookups to settle (its allowance unspent).
    if (lookups === undefined && this.#lookups.size >= this.#options.maxClients) return this.#busy()
    const existing = this.#clients.get(client)
    const overWaitMs = this.#wait(existing, nowMs, true)
    let allowanceMinuteMs: number | null = null
    if (overWaitMs === 0) {
      // Under budget: no more failing lookups at once than the budget has room for.
      if (inFlight >= this.#room(existing, nowMs)) return null
    } else {
      const windows = this.#windows(client, nowMs)
      if (windows.allowanceSpent >= this.#options.lookupsOverBudgetPerMinute) {
        const refillMs = windows.minuteStartMs + MINUTE_MS - nowMs
        return { kind: 'over', waitMs: Math.max(1, Math.min(refillMs, overWaitMs)) }
      }
      windows.allowanceSpent++
      allowanceMinuteMs = windows.minuteStartMs
    }
    if (lookups === undefined) this.#lookups.set(client, (lookups = { inFlight: 0, queue: [] }))
    lookups.inFlight++
    this.#keysInFlight.set(keyId, (this.#keysInFlight.get(keyId) ?? 0) + 1)
    return { kind: 'slot', slot: new LookupSlot(this, client, keyId, allowanceMinuteMs) }
  }

  /** Failures that cost a store lookup the address may still have this minute and hour. */
  #room(windows: Windows | undefined, nowMs: number): number {
    const minute = windows !== undefined && minuteLive(windows, nowMs) ? windows.lookupFailuresMinute : 0
    const hour = windows !== undefined && hourLive(windows, nowMs) ? windows.lookupFailuresHour : 0
    return Math.min(this.#options.perMinute - minute, this.#options.perHour - hour)
  }

  /** @internal A slot's store call settled and its answer was counted: its place goes to the next queued lookup that may go. */
  released(client: string): void {
    const lookups = this.#lookups.get(client)
    if (lookups === undefined) return
    lookups.inFlight--
    while (lookups.queue.length > 0) {
      const waiter = lookups.queue[0]!
      const gate = this.#gate(client, waiter.keyId, waiter.singleFlight)
      if (gate === null) break
      lookups.queue.shift()
      clearTimeout(waiter.timer)
      waiter.resolve(gate)
    }
    this.#forgetIfIdle(client, lookups)
  }

  #forgetIfIdle(client: string, lookups: Lookups): void {
    if (lookups.inFlight === 0 && lookups.queue.length === 0 && this.#lookups.get(client) === lookups)
      this.#lookups.delete(client)
  }

  /** @internal A lookup of `keyId` stopped being one to join (its request was answered or gave up). */
  keyAnswered(keyId: string): void {
    const left = (this.#keysInFlight.get(keyId) ?? 1) - 1
    if (left === 0) this.#keysInFlight.delete(keyId)
    else this.#keysInFlight.set(keyId, left)
  }

  /** @internal An allowance point spent by a lookup whose key verified comes back. */
  refundAllowance(client: string, minuteStartMs: number): void {
    const windows = this.#clients.get(client)
    if (windows !== undefined && windows.minuteStartMs === minuteStartMs && windows.allowanceSpent > 0)
      windows.allowanceSpent--
  }

  /**
   * Trusts `keyId` of `tenantId`: a whole decision admitted it. Until `untilMs` (the key's
   * expiry) at the latest. Cheap when called on every request: writes at most once a second per key.
   */
  admitted(keyId: string, tenantId: string, nowMs: number, untilMs: number = Infinity): void {
    if (this.#options.trustVerifiedMs === 0) return
    this.#trusted.trust(keyId, tenantId, nowMs, Math.min(untilMs, nowMs + this.#options.trustVerifiedMs))
  }

  /** Forgets a key ID's trust: it was revoked, expired, deleted or changed. */
  distrust(keyId: string): void {
    this.#trusted.delete(keyId)
  }

  isTrusted(keyId: string, nowMs: number = this.#options.now()): boolean {
    return this.#trusted.has(keyId, nowMs)
  }
}

/**
 * A clock stepped back (NTP) before a window's start moves the window back with it, its counts
 * kept: a step back never forgives failures, and never makes a wait longer than a window.
 */
function stepBack(windows: Windows, nowMs: number): void {
  if (nowMs < windows.hourStartMs) windows.hourStartMs = nowMs
  if (nowMs < windows.minuteStartMs) windows.minuteStartMs = nowMs
}

function minuteLive(windows: Windows, nowMs: number): boolean {
  return nowMs >= windows.minuteStartMs && nowMs < windows.minuteStartMs + MINUTE_MS
}

function hourLive(windows: Windows, nowMs: number): boolean {
  return nowMs >= windows.hourStartMs && nowMs < windows.hourStartMs + HOUR_MS
}

interface Trust {
  readonly tenantId: string
  atMs: number
  untilMs: number
}

/**
 * Trusted key IDs, at most `max`, shared fairly among tenants: when full, the key
 * trusted longest ago of the tenant holding the most goes (on a tie, the adding
 * tenant's own). One tenant's one-shot keys therefore evict its own, never a
 * neighbour's, once it holds as many as they do.
 */
class TrustList {
  readonly #byKey = new Map<string, Trust>()
  /** Each tenant's key IDs, oldest first. */
  readonly #byTenant = new Map<string, Set<string>>()
  /** Tenants by how many key IDs they hold, to find the largest in constant time. */
  readonly #bySize = new Map<number, Set<string>>()
  #largest = 0
  readonly #max: number

  constructor(max: number) {
    this.#max = max
  }

  get size(): number {
    return this.#byKey.size
  }

  has(keyId: string, nowMs: number): boolean {
    const trust = this.#byKey.get(keyId)
    return trust !== undefined && nowMs >= trust.atMs && nowMs < trust.untilMs
  }

  trust(keyId: string, tenantId: string, nowMs: number, untilMs: number): void {
    const known = this.#byKey.get(keyId)
    if (known !== undefined && known.tenantId === tenantId) {
      if (nowMs - known.atMs < 1_000 && nowMs >= known.atMs) return
      known.atMs = nowMs
      known.untilMs = untilMs
      const keys = this.#byTenant.get(tenantId)!
      keys.delete(keyId)
      keys.add(keyId)
      return
    }
    if (known !== undefined) this.delete(keyId)
    if (this.#max <= 0) return
    if (this.#byKey.size >= this.#max) this.#evict(tenantId)
    this.#byKey.set(keyId, { tenantId, atMs: nowMs, untilMs })
    let keys = this.#byTenant.get(tenantId)
    if (keys === undefined) this.#byTenant.set(tenantId, (keys = new Set()))
    keys.add(keyId)
    this.#resized(tenantId, keys.size - 1, keys.size)
  }

  delete(keyId: string): void {
    const trust = this.#byKey.get(keyId)
    if (trust === undefined) return
    this.#byKey.delete(keyId)
    const keys = this.#byTenant.get(trust.tenantId)!
    keys.delete(keyId)
    if (keys.size === 0) this.#byTenant.delete(trust.tenantId)
    this.#resized(trust.tenantId, keys.size + 1, keys.size)
  }

  /** Room for a key of `adding`: its own oldest goes when it holds the most (a tie included), else the largest's. */
  #evict(adding: string): void {
    const own = this.#byTenant.get(adding)
    const tenantId =
      own !== undefined && own.size >= this.#largest ? adding : this.#bySize.get(this.#largest)?.values().next().value
    if (tenantId === undefined) return
    this.delete(this.#byTenant.get(tenantId)!.values().next().value as string)
  }

  #resized(tenantId: string, from: number, to: number): void {
    const was = this.#bySize.get(from)
    if (was !== undefined) {
      was.delete(tenantId)
      if (was.size === 0) this.#bySize.delete(from)
    }
    if (to > 0) {
      let now = this.#bySize.get(to)
      if (now === undefined) this.#bySize.set(to, (now = new Set()))
      now.add(tenantId)
      if (to > this.#largest) this.#largest = to
    }
    while (this.#largest > 0 && !this.#bySize.has(this.#largest)) this.#largest--
  }
}
