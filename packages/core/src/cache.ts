interface Entry<V> {
  value: V
  expiresAtMs: number
}

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

  constructor(maxEntries: number, now: () => number) {
    this.#maxEntries = maxEntries
    this.#now = now
  }

  get size(): number {
    return this.#entries.size
  }

  /** The value when present and fresh; refreshes its LRU position. */
  getFresh(key: string): V | undefined {
    const entry = this.#entries.get(key)
    if (entry === undefined || entry.expiresAtMs <= this.#now()) return undefined
    this.#entries.delete(key)
    this.#entries.set(key, entry)
    return entry.value
  }

  /** The value even when expired, for stale-if-error. */
  getStale(key: string): V | undefined {
    return this.#entries.get(key)?.value
  }

  set(key: string, value: V, ttlMs: number): void {
    if (this.#maxEntries === 0) return
    this.#entries.delete(key)
    this.#entries.set(key, { value, expiresAtMs: this.#now() + ttlMs })
    if (this.#entries.size > this.#maxEntries) {
      // Map iterates in insertion order: the first key is the least recently used.
      this.#entries.delete(this.#entries.keys().next().value as string)
    }
  }

  delete(key: string): void {
    this.#generation++
    this.#entries.delete(key)
    this.#pending.delete(key)
  }

  /** Drops entries whose value matches, e.g. every key of a tenant. */
  deleteWhere(matches: (value: V) => boolean): void {
    this.#generation++
    for (const [key, entry] of this.#entries) if (matches(entry.value)) this.#entries.delete(key)
    this.#pending.clear()
  }

  clear(): void {
    this.#generation++
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
