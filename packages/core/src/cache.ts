interface Entry<V> {
  value: V
  expiresAtMs: number
  /** When the entry last moved to the young end of the LRU order. */
  touchedAtMs: number
  /** From then on, a use of the entry reloads it in the background (refresh-ahead). */
  refreshAtMs: number
}

// Moving an entry on every hit (delete + set) costs more than the lookup itself;
// once a second is enough to keep hot entries away from eviction.
const TOUCH_INTERVAL_MS = 1_000

/**
 * A bounded LRU map with per-entry TTL and single-flight loading.
 * Expired entries stay (until evicted) so a failing store can fall back to
 * them when the user chose to serve stale records.
 */
export class LoadingCache<V> {
  readonly #entries = new Map<string, Entry<V>>()
  readonly #pending = new Map<string, Promise<V>>()
  readonly #maxEntries: number
  readonly #now: () => number
  // Bumped by every invalidation: a load that started before it must not write back.
  #generation = 0
  // The entry getFresh found last, so refreshIfDue right after it needs no lookup.
  #lastKey: string | undefined
  #lastEntry: Entry<V> | undefined

  readonly #onDrop: ((value: V) => void) | undefined

  /** `onDrop` sees every value that leaves the cache (evicted, replaced, deleted), e.g. to wipe it. */
  constructor(maxEntries: number, now: () => number, onDrop?: (value: V) => void) {
    this.#maxEntries = maxEntries
    this.#now = now
    this.#onDrop = onDrop
  }

  #drop(entry: Entry<V> | undefined): void {
    if (entry !== undefined) this.#onDrop?.(entry.value)
  }

  get size(): number {
    return this.#entries.size
  }

  /** The value when present, fresh or not, leaving its LRU position alone. */
  peek(key: string): V | undefined {
    return this.#entries.get(key)?.value
  }

  /** The value when present and fresh; refreshes its LRU position. */
  getFresh(key: string, nowMs: number = this.#now()): V | undefined {
    const entry = this.#entries.get(key)
    if (entry === undefined || entry.expiresAtMs <= nowMs) return undefined
    this.#lastKey = key
    this.#lastEntry = entry
    if (nowMs - entry.touchedAtMs >= TOUCH_INTERVAL_MS) {
      entry.touchedAtMs = nowMs
      this.#entries.delete(key)
      this.#entries.set(key, entry)
    }
    return entry.value
  }

  /** The value even when expired, for stale-if-error, but never more than `maxStaleMs` past its expiry. */
  getStale(key: string, maxStaleMs: number, nowMs: number = this.#now()): V | undefined {
    const entry = this.#entries.get(key)
    return entry === undefined || nowMs >= entry.expiresAtMs + maxStaleMs ? undefined : entry.value
  }

  /**
   * Refresh-ahead: once an entry in use has lived half its TTL, reloads it in the
   * background (single-flight), so an entry that keeps being used never expires
   * while the store answers. A failed reload is retried at half the time left.
   * The staleness bound is unchanged: a refreshed entry is younger, never older.
   */
  refreshIfDue(
    key: string,
    nowMs: number,
    loader: (key: string) => Promise<V>,
    ttlFor: (value: V) => number,
    onError: (error: unknown) => void,
  ): void {
    // Usually right after getFresh of the same key: no second lookup.
    const entry = this.#lastKey === key ? this.#lastEntry : this.#entries.get(key)
    if (entry === undefined || nowMs < entry.refreshAtMs || this.#pending.has(key)) return
    entry.refreshAtMs = nowMs + Math.max(1, Math.floor((entry.expiresAtMs - nowMs) / 2))
    this.load(key, () => loader(key), ttlFor).catch(onError)
  }

  set(key: string, value: V, ttlMs: number): void {
    if (this.#maxEntries === 0) {
      this.#onDrop?.(value)
      return
    }
    if (key === this.#lastKey) this.#lastKey = undefined
    const previous = this.#entries.get(key)
    if (previous !== undefined && previous.value !== value) this.#drop(previous)
    this.#entries.delete(key)
    const nowMs = this.#now()
    this.#entries.set(key, {
      value,
      expiresAtMs: nowMs + ttlMs,
      touchedAtMs: nowMs,
      refreshAtMs: nowMs + Math.floor(ttlMs / 2),
    })
    if (this.#entries.size > this.#maxEntries) {
      // Map iterates in insertion order: the first key is the least recently used.
      const oldest = this.#entries.keys().next().value as string
      this.#drop(this.#entries.get(oldest))
      this.#entries.delete(oldest)
    }
  }

  delete(key: string): void {
    this.#generation++
    this.#lastKey = undefined
    this.#lastEntry = undefined
    this.#drop(this.#entries.get(key))
    this.#entries.delete(key)
    this.#pending.delete(key)
  }

  clear(): void {
    this.#generation++
    this.#lastKey = undefined
    this.#lastEntry = undefined
    for (const entry of this.#entries.values()) this.#drop(entry)
    this.#entries.clear()
    this.#pending.clear()
  }

  /**
   * Loads a missing or expired key once, however many callers ask at the same
   * time; `ttlFor` picks the lifetime of what was loaded (0: do not keep).
   */
  load(key: string, loader: () => Promise<V>, ttlFor: (value: V) => number): Promise<V> {
    const pending = this.#pending.get(key)
    if (pending !== undefined) return pending
    const generation = this.#generation
    const promise = loader().then(
      (value) => {
        if (this.#pending.get(key) === promise) this.#pending.delete(key)
        const ttlMs = ttlFor(value)
        if (generation === this.#generation && ttlMs > 0) this.set(key, value, ttlMs)
        return value
      },
      (error: unknown) => {
        if (this.#pending.get(key) === promise) this.#pending.delete(key)
        throw error
      },
    )
    this.#pending.set(key, promise)
    return promise
  }
}
