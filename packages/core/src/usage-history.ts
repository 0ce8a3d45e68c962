import type { DecisionReason } from './decision.js'
import { asStoreError, SaikuConfigError, SaikuInputError } from './errors.js'

// Usage over time: each decision about a known tenant adds to an hourly bucket per tenant and key,
// gathered in memory and written in batches by a store's additive upsert (`KeyStore.addUsage`).

export const HOUR_MS = 3_600_000
export const DAY_MS = 86_400_000

/** What a decision is counted as: admitted, or refused for one of four reasons. */
export type UsageOutcome = 'admitted' | 'rateLimited' | 'quotaExceeded' | 'forbidden' | 'paymentRequired'

export const USAGE_OUTCOMES: readonly UsageOutcome[] = Object.freeze([
  'admitted',
  'rateLimited',
  'quotaExceeded',
  'forbidden',
  'paymentRequired',
])

/** Requests counted, by outcome. */
export interface UsageCounts {
  readonly admitted: number
  /** 429 of the minute or hour window (or a cost no window can hold). */
  readonly rateLimited: number
  /** 429 of the day or month quota. */
  readonly quotaExceeded: number
  /** 403 from the authenticator: a key used from an address its allowlist leaves out. */
  readonly forbidden: number
  /** 402: no active subscription or trial. */
  readonly paymentRequired: number
}

/** One hour of one key's requests (`keyId` null: a credential without a key ID). What stores persist. */
export interface UsageBucket extends UsageCounts {
  readonly tenantId: string
  readonly keyId: string | null
  /** The hour's start, epoch milliseconds, a whole UTC hour. */
  readonly hourStartMs: number
}

/** What `KeyStore.readUsage` is asked: a tenant's buckets whose hour starts in `[fromMs, toMs)`. */
export interface UsageQuery {
  readonly tenantId: string
  readonly fromMs: number
  readonly toMs: number
  /** Only this key's buckets. */
  readonly keyId?: string | undefined
}

/** One point per hour, or per UTC day. */
export type UsageGranularity = 'hour' | 'day'

/** What `authenticator.usageHistory()` is asked. */
export interface UsageHistoryQuery {
  /** Start, included; rounded down to the hour or UTC day. */
  readonly from: Date | number
  /** End, excluded; rounded up to the hour or UTC day. */
  readonly to: Date | number
  /** Default `'hour'`. */
  readonly granularity?: UsageGranularity | undefined
  /** Only this key's requests. */
  readonly keyId?: string | undefined
}

/** One hour's or day's requests in a {@link UsageHistory}. */
export interface UsagePoint extends UsageCounts {
  /** The hour's or UTC day's start, ISO 8601. */
  readonly start: string
}

/** One key's requests over a {@link UsageHistory}'s range. */
export interface KeyUsage extends UsageCounts {
  readonly keyId: string | null
}

/** A tenant's usage over a range: one point per hour or day (zeros included), the totals, and the keys that made it. */
export interface UsageHistory {
  readonly tenantId: string
  readonly granularity: UsageGranularity
  readonly from: string
  readonly to: string
  readonly points: readonly UsagePoint[]
  readonly totals: UsageCounts
  /** Keys with requests in the range, most requests first. */
  readonly keys: readonly KeyUsage[]
}

/** At most this many points in one answer: 100 days of hours, or about 6.5 years of days. */
export const MAX_USAGE_POINTS = 2_400

/** The store's side of the recorder: `KeyStore.addUsage` and `readUsage` (and `pruneUsage` when it has it). */
export interface UsageStore {
  addUsage(buckets: readonly UsageBucket[]): Promise<void>
  readUsage(query: UsageQuery): Promise<readonly UsageBucket[]>
  pruneUsage?(beforeMs: number): Promise<unknown>
}

/** Whether the store can persist usage buckets; the precise configuration error when it cannot. */
export function usageStoreOf(store: object): UsageStore {
  const candidate = store as Partial<UsageStore>
  const missing = (['addUsage', 'readUsage'] as const).filter((name) => typeof candidate[name] !== 'function')
  if (missing.length > 0)
    throw new SaikuConfigError(
      'usageHistory',
      `a store with addUsage and readUsage (this one lacks ${missing.join(' and ')}), or usageHistory left out`,
      true,
    )
  return store as UsageStore
}

/** What each decision counts as; null: not counted (no tenant, a 401, a failure of the service). */
export function usageOutcome(
  status: number,
  reason: DecisionReason,
  enforced: boolean,
  quota: boolean,
): UsageOutcome | null {
  // Report-only: the request was served whatever the limits said.
  if (!enforced || status === 200) return reason === 'already_admitted' ? null : 'admitted'
  if (status === 429) return quota ? 'quotaExceeded' : 'rateLimited'
  if (status === 402) return 'paymentRequired'
  if (status === 403) return 'forbidden'
  return null
}

interface MutableBucket {
  readonly tenantId: string
  readonly keyId: string | null
  readonly hourStartMs: number
  admitted: number
  rateLimited: number
  quotaExceeded: number
  forbidden: number
  paymentRequired: number
}

export interface UsageRecorderOptions {
  readonly store: UsageStore
  /** Buckets held in memory at most, waiting or kept after a failed write; a decision that needs one more is dropped and counted. */
  readonly maxPendingBuckets: number
  /** How often the buckets are written; 0: only by `flush()`. */
  readonly flushIntervalMs: number
  /** Buckets older than this are pruned (at most once an hour, after a write). 0: never. */
  readonly retentionMs: number
  readonly now: () => number
  /** Failed writes, failed prunes and dropped decisions. */
  readonly reportError: (error: Error) => void
}

export interface UsageRecorderStats {
  /** Buckets in memory: at most `maxPendingBuckets`. */
  readonly pendingBuckets: number
  /** Decisions not counted because `maxPendingBuckets` buckets were waiting already, since start. */
  readonly droppedDecisions: number
  /** Writes that failed (their buckets kept for the next), since start. */
  readonly failedWrites: number
}

/** Buckets by hour, tenant and key: lookups by the strings a decision already holds, never a key built per call. */
type Buckets = Map<number, Map<string, Map<string | null, MutableBucket>>>

/**
 * Gathers decisions into hourly buckets in memory (a map update per decision, never a store call),
 * and writes them with one additive upsert every `flushIntervalMs`, at `flush()` and at `close()`.
 * One write at a time; decisions that arrive during a write go into the next batch. A write that
 * fails is put back (added to what came in meanwhile) and tried at the next flush; what does not
 * fit under `maxPendingBuckets` is dropped, counted, and reported.
 */
export class UsageRecorder {
  readonly #store: UsageStore
  readonly #max: number
  readonly #retentionMs: number
  readonly #now: () => number
  readonly #reportError: (error: Error) => void
  #pending: Buckets = new Map()
  #size = 0
  #writing: Promise<unknown> = Promise.resolve()
  #timer: ReturnType<typeof setInterval> | undefined
  #dropped = 0
  #droppedReported = 0
  #failedWrites = 0
  #lastPruneMs = -Infinity
  // The current hour and its tenants, kept so that most decisions skip the division and one lookup.
  #hourStartMs = 0
  #hourEndMs = 0
  #hour: Map<string, Map<string | null, MutableBucket>> | undefined

  constructor(options: UsageRecorderOptions) {
    this.#store = options.store
    this.#max = options.maxPendingBuckets
    this.#retentionMs = options.retentionMs
    this.#now = options.now
    this.#reportError = options.reportError
    if (options.flushIntervalMs > 0) {
      this.#timer = setInterval(() => {
        // Reported by the write itself; nothing is lost.
        this.flush().catch(() => {})
      }, options.flushIntervalMs)
      this.#timer.unref?.()
    }
  }

  /** Counts one decision now. */
  record(tenantId: string, keyId: string | null, outcome: UsageOutcome): void {
    const nowMs = this.#now()
    let hour = this.#hour
    if (hour === undefined || nowMs < this.#hourStartMs || nowMs >= this.#hourEndMs) {
      this.#hourStartMs = nowMs - (((nowMs % HOUR_MS) + HOUR_MS) % HOUR_MS)
      this.#hourEndMs = this.#hourStartMs + HOUR_MS
      hour = this.#hourOf(this.#hourStartMs)
    }
    const bucket = hour.get(tenantId)?.get(keyId)
    if (bucket === undefined) this.#add(this.#hourStartMs, tenantId, keyId, outcome, 1)
    // The common case by name: a store to a known field, not a keyed one.
    else if (outcome === 'admitted') bucket.admitted++
    else bucket[outcome]++
  }

  #hourOf(hourStartMs: number): Map<string, Map<string | null, MutableBucket>> {
    let hour = this.#pending.get(hourStartMs)
    if (hour === undefined)
      this.#pending.set(hourStartMs, (hour = new Map<string, Map<string | null, MutableBucket>>()))
    if (hourStartMs === this.#hourStartMs) this.#hour = hour
    return hour
  }

  #add(hourStartMs: number, tenantId: string, keyId: string | null, outcome: UsageOutcome, count: number): void {
    const hour = this.#hourOf(hourStartMs)
    let keys = hour.get(tenantId)
    let bucket = keys?.get(keyId)
    if (bucket === undefined) {
      if (this.#size >= this.#max) {
        this.#dropped += count
        return
      }
      if (keys === undefined) hour.set(tenantId, (keys = new Map<string | null, MutableBucket>()))
      bucket = {
        tenantId,
        keyId,
        hourStartMs,
        admitted: 0,
        rateLimited: 0,
        quotaExceeded: 0,
        forbidden: 0,
        paymentRequired: 0,
      }
      keys.set(keyId, bucket)
      this.#size++
    }
    bucket[outcome] += count
  }

  /**
   * Writes what has been gathered; resolves with the buckets written. Waits for a write under way
   * first, so two never overlap. When the store rejects, the buckets are kept for the next flush,
   * the failure goes to `onError`, and this rejects with a `SaikuStoreError`.
   */
  flush(): Promise<number> {
    const run = this.#writing.then(() => this.#writeOnce())
    this.#writing = run.catch(() => {})
    return run
  }

  #take(): MutableBucket[] {
    const batch: MutableBucket[] = []
    for (const hour of this.#pending.values())
      for (const keys of hour.values()) for (const bucket of keys.values()) batch.push(bucket)
    this.#pending = new Map()
    this.#hour = undefined
    this.#size = 0
    return batch
  }

  async #writeOnce(): Promise<number> {
    this.#reportDrops()
    const batch = this.#take()
    if (batch.length > 0) {
      try {
        await this.#store.addUsage(batch)
      } catch (error) {
        this.#failedWrites++
        this.#putBack(batch)
        const failure = asStoreError(
          error,
          'key_store',
          `usage history: writing ${batch.length} buckets failed; kept for the next flush`,
        )
        this.#reportError(failure)
        throw failure
      }
      // After a write only: an idle process (or one whose store has closed) asks nothing of the store.
      await this.#prune()
    }
    return batch.length
  }

  /** A failed batch back in front of what came in meanwhile: the same counts, added. */
  #putBack(batch: readonly MutableBucket[]): void {
    const newer = this.#take()
    for (const bucket of [...batch, ...newer])
      for (const outcome of USAGE_OUTCOMES)
        if (bucket[outcome] > 0) this.#add(bucket.hourStartMs, bucket.tenantId, bucket.keyId, outcome, bucket[outcome])
  }

  #reportDrops(): void {
    const dropped = this.#dropped - this.#droppedReported
    if (dropped === 0) return
    this.#droppedReported = this.#dropped
    this.#reportError(
      new Error(
        `usage history: ${dropped} decisions were not counted: ${this.#max} buckets (usageHistory.maxPendingBuckets) were waiting to be written`,
      ),
    )
  }

  async #prune(): Promise<void> {
    const nowMs = this.#now()
    if (this.#retentionMs === 0 || this.#store.pruneUsage === undefined || nowMs - this.#lastPruneMs < HOUR_MS) return
    this.#lastPruneMs = nowMs
    try {
      await this.#store.pruneUsage(nowMs - this.#retentionMs)
    } catch (error) {
      // The next hour's prune deletes the same rows.
      this.#reportError(asStoreError(error, 'key_store', 'usage history: pruning old buckets failed'))
    }
  }

  /** The buckets not yet handed to the store, for reads between two writes. */
  pendingFor(query: UsageQuery): UsageBucket[] {
    const found: UsageBucket[] = []
    for (const [hourStartMs, hour] of this.#pending) {
      if (hourStartMs < query.fromMs || hourStartMs >= query.toMs) continue
      const keys = hour.get(query.tenantId)
      if (keys === undefined) continue
      for (const bucket of keys.values())
        if (query.keyId === undefined || bucket.keyId === query.keyId) found.push({ ...bucket })
    }
    return found
  }

  stats(): UsageRecorderStats {
    return { pendingBuckets: this.#size, droppedDecisions: this.#dropped, failedWrites: this.#failedWrites }
  }

  /** Stops the timer and writes what is left (rejecting as `flush()` does). */
  close(): Promise<number> {
    if (this.#timer !== undefined) clearInterval(this.#timer)
    this.#timer = undefined
    return this.flush()
  }
}

const ZERO: UsageCounts = Object.freeze({
  admitted: 0,
  rateLimited: 0,
  quotaExceeded: 0,
  forbidden: 0,
  paymentRequired: 0,
})

function instant(field: string, value: unknown): number {
  const ms = value instanceof Date ? value.getTime() : value
  if (typeof ms !== 'number' || !Number.isFinite(ms))
    throw new SaikuInputError(field, `${field} must be a date (an ISO 8601 time or epoch milliseconds)`)
  return ms
}

/** The query checked and rounded out to whole hours or UTC days; a SaikuInputError names the field at fault. */
export function resolveUsageQuery(
  tenantId: string,
  query: UsageHistoryQuery,
): UsageQuery & { readonly granularity: UsageGranularity; readonly stepMs: number } {
  if (typeof query !== 'object' || query === null) throw new SaikuInputError('query', 'expected { from, to }')
  const granularity = query.granularity ?? 'hour'
  if (granularity !== 'hour' && granularity !== 'day')
    throw new SaikuInputError('granularity', 'granularity must be "hour" or "day"')
  const stepMs = granularity === 'hour' ? HOUR_MS : DAY_MS
  const fromMs = Math.floor(instant('from', query.from) / stepMs) * stepMs
  const toMs = Math.ceil(instant('to', query.to) / stepMs) * stepMs
  if (toMs <= fromMs) throw new SaikuInputError('to', 'to must be after from')
  if ((toMs - fromMs) / stepMs > MAX_USAGE_POINTS)
    throw new SaikuInputError('to', `from and to may be at most ${MAX_USAGE_POINTS} ${granularity}s apart`)
  const { keyId } = query
  if (keyId !== undefined && (typeof keyId !== 'string' || keyId.length === 0 || keyId.length > 200))
    throw new SaikuInputError('keyId', 'keyId must be a key ID')
  return { tenantId, fromMs, toMs, granularity, stepMs, ...(keyId === undefined ? {} : { keyId }) }
}

/** Sums buckets into one point per hour or day of the range (zeros where none), the totals and the keys. */
export function summarizeUsage(
  query: ReturnType<typeof resolveUsageQuery>,
  buckets: Iterable<UsageBucket>,
): UsageHistory {
  const { fromMs, toMs, stepMs } = query
  const points: Record<keyof UsageCounts, number>[] = []
  for (let at = fromMs; at < toMs; at += stepMs) points.push({ ...ZERO })
  const totals: Record<keyof UsageCounts, number> = { ...ZERO }
  const keys = new Map<string | null, Record<keyof UsageCounts, number>>()
  for (const bucket of buckets) {
    if (bucket.hourStartMs < fromMs || bucket.hourStartMs >= toMs) continue
    if (query.keyId !== undefined && bucket.keyId !== query.keyId) continue
    const point = points[Math.floor((bucket.hourStartMs - fromMs) / stepMs)]!
    let key = keys.get(bucket.keyId)
    if (key === undefined) keys.set(bucket.keyId, (key = { ...ZERO }))
    for (const outcome of USAGE_OUTCOMES) {
      const count = bucket[outcome]
      point[outcome] += count
      totals[outcome] += count
      key[outcome] += count
    }
  }
  const requests = (counts: UsageCounts): number => USAGE_OUTCOMES.reduce((sum, outcome) => sum + counts[outcome], 0)
  return {
    tenantId: query.tenantId,
    granularity: query.granularity,
    from: new Date(fromMs).toISOString(),
    to: new Date(toMs).toISOString(),
    points: points.map((counts, index) => ({ start: new Date(fromMs + index * stepMs).toISOString(), ...counts })),
    totals,
    keys: [...keys]
      .map(([keyId, counts]) => ({ keyId, ...counts }))
      .sort((a, b) => requests(b) - requests(a) || String(a.keyId).localeCompare(String(b.keyId))),
  }
}

/** Adds one bucket's counts to another's; what a store's upsert does per row. */
export function addCounts(into: Record<keyof UsageCounts, number>, from: UsageCounts): void {
  for (const outcome of USAGE_OUTCOMES) into[outcome] += from[outcome]
}

/** Checks buckets handed to `KeyStore.addUsage`; a store author calls it before writing. Returns a problem, or null. */
export function usageBucketsProblem(buckets: unknown): string | null {
  if (!Array.isArray(buckets)) return 'buckets must be an array'
  for (const [index, bucket] of buckets.entries()) {
    const b = bucket as Partial<UsageBucket> | null
    if (typeof b !== 'object' || b === null) return `buckets[${index}] must be an object`
    if (typeof b.tenantId !== 'string' || b.tenantId.length === 0)
      return `buckets[${index}].tenantId must be a tenant ID`
    if (b.keyId !== null && (typeof b.keyId !== 'string' || b.keyId.length === 0))
      return `buckets[${index}].keyId must be a key ID or null`
    if (!Number.isSafeInteger(b.hourStartMs) || b.hourStartMs! % HOUR_MS !== 0)
      return `buckets[${index}].hourStartMs must be the start of a UTC hour in epoch milliseconds`
    for (const outcome of USAGE_OUTCOMES) {
      const count = b[outcome]
      if (!Number.isSafeInteger(count) || count! < 0)
        return `buckets[${index}].${outcome} must be a non-negative integer`
    }
  }
  return null
}
