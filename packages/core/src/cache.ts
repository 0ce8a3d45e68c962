import { FrequencySketch, type KeyHash } from './frequency-sketch.js'

/** One cached key, linked into the recency order of its segment. */
class Entry<V> {
  prev: Entry<V> = this
  next: Entry<V> = this
  segment: Segment<V> | null = null
  constructor(
    readonly key: string,
    public value: V,
    public expiresAtMs: number,
    /** From then on, a use of the entry reloads it in the background (refresh-ahead). */
    public refreshAtMs: number,
    readonly hash: KeyHash,
    /** Whether a hit counts as a use for admission (a cached "no such key" does not). */
    public countsHits: boolean,
    /** When a hit last counted as a use. */
    public usedAtMs: number,
  ) {}
}

// Counting a hit and moving the entry costs more than the lookup itself; once a second
// is enough to keep a key in steady use, and caps how fast hammering one key raises its count.
const USE_INTERVAL_MS = 1_000

// The sketch starts this small and doubles as the cache fills (past half of what it is sized for), up to the
// bound: admission weighs counts only once the main part is full, by when the sketch has its full size.
const SKETCH_START_ENTRIES = 256

/** A recency-ordered list: `head.next` is the least recently used, `head.prev` the most. */
class Segment<V> {
  readonly head: Entry<V>
  size = 0
  constructor(readonly max: number) {
    this.head = new Entry<V>('', undefined as V, 0, 0, { h1: 0, h2: 1 }, false, 0)
  }

  get oldest(): Entry<V> | null {
    return this.size === 0 ? null : this.head.next
  }

  push(entry: Entry<V>): void {
    const last = this.head.prev
    entry.prev = last
    entry.next = this.head
    last.next = entry
    this.head.prev = entry
    entry.segment = this
    this.size++
  }

  /** Most recently used, without leaving the segment. */
  touch(entry: Entry<V>): void {
    if (this.head.prev === entry) return
    unlink(entry)
    this.push(entry)
  }

  clear(): void {
    this.head.prev = this.head
    this.head.next = this.head
    this.size = 0
  }
}

function unlink<V>(entry: Entry<V>): void {
  entry.prev.next = entry.next
  entry.next.prev = entry.prev
  entry.prev = entry
  entry.next = entry
  entry.segment!.size--
  entry.segment = null
}

export interface LoadingCacheOptions<V> {
  /** Sees every value that leaves the cache (evicted, replaced, deleted), e.g. to wipe it. */
  readonly onDrop?: ((value: V) => void) | undefined
  /**
   * Whether a hit on this value counts as a use when the cache chooses what to keep
   * (default: every value). A load from the store always counts.
   */
  readonly hitCounts?: ((value: V) => boolean) | undefined
}

/**
 * A bounded map with per-entry TTL and single-flight loading, whose bound is kept
 * by W-TinyLFU (as Caffeine does): a new entry goes to a small recency window
 * (1 % of the bound); leaving it, it enters the main part only when it was used
 * more often lately than the entry it would evict there, as a frequency sketch
 * estimates. The main part is a segmented LRU: an entry used again moves from
 * probation to a protected segment (80 % of the main part). So keys presented
 * once, however many, evict only entries used less than they were, and never a
 * key in steady use.
 *
 * Expired entries stay (until evicted) so a failing store can fall back to
 * them when the user chose to serve stale records.
 */
export class LoadingCache<V> {
  readonly #entries = new Map<string, Entry<V>>()
  readonly #pending = new Map<string, Promise<V>>()
  readonly #maxEntries: number
  readonly #window: Segment<V>
  readonly #probation: Segment<V>
  readonly #protected: Segment<V>
  readonly #mainMax: number
  readonly #sketch: FrequencySketch
  #sketchEntries: number
  readonly #now: () => number
  // Bumped by every invalidation: a load that started before it must not write back.
  #generation = 0
  // The entry getFresh found last, so refreshIfDue right after it needs no lookup.
  #lastKey: string | undefined
  #lastEntry: Entry<V> | undefined

  readonly #onDrop: ((value: V) => void) | undefined
  readonly #hitCounts: ((value: V) => boolean) | undefined

  constructor(maxEntries: number, now: () => number, options: LoadingCacheOptions<V> = {}) {
    this.#maxEntries = maxEntries
    this.#now = now
    this.#onDrop = options.onDrop
    this.#hitCounts = options.hitCounts
    this.#mainMax = Math.floor(maxEntries * 0.99)
    this.#window = new Segment(maxEntries - this.#mainMax)
    this.#probation = new Segment(this.#mainMax)
    this.#protected = new Segment(Math.floor(this.#mainMax * 0.8))
    this.#sketchEntries = Math.min(maxEntries, SKETCH_START_ENTRIES)
    this.#sketch = new FrequencySketch(this.#sketchEntries)
  }

  #evict(entry: Entry<V>): void {
    if (entry.segment !== null) unlink(entry)
    this.#entries.delete(entry.key)
    if (this.#lastEntry === entry) {
      this.#lastKey = undefined
      this.#lastEntry = undefined
    }
    this.#onDrop?.(entry.value)
  }

  get size(): number {
    return this.#entries.size
  }

  /** The value when present, fresh or not, leaving its position and count alone. */
  peek(key: string): V | undefined {
    return this.#entries.get(key)?.value
  }

  /**
   * The value when present and fresh. Counts the use and refreshes its recency, at most
   * once a second per entry. O(1), allocates nothing.
   */
  getFresh(key: string, nowMs: number = this.#now()): V | undefined {
    const entry = this.#entries.get(key)
    if (entry === undefined || entry.expiresAtMs <= nowMs) return undefined
    this.#lastKey = key
    this.#lastEntry = entry
    // A hit that does not count (a cached "no such key") leaves the entry where it is: repeating it earns nothing.
    if (!entry.countsHits || nowMs - entry.usedAtMs < USE_INTERVAL_MS) return entry.value
    entry.usedAtMs = nowMs
    this.#sketch.increment(entry.hash)
    const segment = entry.segment!
    if (segment !== this.#probation) {
      segment.touch(entry)
      return entry.value
    }
    // Used again: protected, whose least recently used goes back to probation (it is not evicted).
    unlink(entry)
    this.#protected.push(entry)
    if (this.#protected.size > this.#protected.max) {
      const demoted = this.#protected.oldest!
      unlink(demoted)
      this.#probation.push(demoted)
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
    // The use that made it due was counted already.
    this.#load(key, () => loader(key), ttlFor, entry.hash).catch(onError)
  }

  set(key: string, value: V, ttlMs: number): void {
    this.#set(key, value, ttlMs, undefined)
  }

  #set(key: string, value: V, ttlMs: number, hash: KeyHash | undefined): void {
    if (this.#maxEntries === 0) {
      this.#onDrop?.(value)
      return
    }
    const nowMs = this.#now()
    const expiresAtMs = nowMs + ttlMs
    const refreshAtMs = nowMs + Math.floor(ttlMs / 2)
    const countsHits = this.#hitCounts?.(value) ?? true
    const previous = this.#entries.get(key)
    if (previous !== undefined) {
      // A reload: same place, same count.
      if (previous.value !== value) this.#onDrop?.(previous.value)
      previous.value = value
      previous.expiresAtMs = expiresAtMs
      previous.refreshAtMs = refreshAtMs
      previous.countsHits = countsHits
      return
    }
    const entry = new Entry(key, value, expiresAtMs, refreshAtMs, hash ?? this.#sketch.hash(key), countsHits, nowMs)
    this.#entries.set(key, entry)
    if (this.#entries.size > this.#sketchEntries / 2 && this.#sketchEntries < this.#maxEntries) {
      this.#sketchEntries = Math.min(this.#maxEntries, this.#sketchEntries * 2)
      this.#sketch.ensureCapacity(this.#sketchEntries, this.#cachedHashes())
    }
    this.#window.push(entry)
    if (this.#window.size > this.#window.max) this.#leaveWindow()
  }

  /**
   * The window's least recently used moves to probation while the main part has
   * room; after that, it is kept only if used more often lately than the entry it
   * would replace (probation's least recently used), else it is the one evicted.
   * A tie keeps the entry already there: a stream of keys used once cannot flush
   * the cache, however long it runs.
   */
  #leaveWindow(): void {
    const candidate = this.#window.oldest!
    unlink(candidate)
    if (this.#probation.size + this.#protected.size < this.#mainMax) {
      this.#probation.push(candidate)
      return
    }
    const victim = this.#probation.oldest ?? this.#protected.oldest
    if (victim === null || this.#sketch.frequency(candidate.hash) <= this.#sketch.frequency(victim.hash)) {
      this.#evict(candidate)
      return
    }
    this.#evict(victim)
    this.#probation.push(candidate)
  }

  *#cachedHashes(): Iterable<KeyHash> {
    for (const entry of this.#entries.values()) yield entry.hash
  }

  delete(key: string): void {
    this.#generation++
    this.#lastKey = undefined
    this.#lastEntry = undefined
    const entry = this.#entries.get(key)
    if (entry !== undefined) this.#evict(entry)
    this.#pending.delete(key)
  }

  clear(): void {
    this.#generation++
    this.#lastKey = undefined
    this.#lastEntry = undefined
    const dropped = [...this.#entries.values()]
    this.#entries.clear()
    this.#window.clear()
    this.#probation.clear()
    this.#protected.clear()
    this.#pending.clear()
    if (this.#onDrop !== undefined) for (const entry of dropped) this.#onDrop(entry.value)
  }

  /**
   * Loads a missing or expired key once, however many callers ask at the same
   * time; `ttlFor` picks the lifetime of what was loaded (0: do not keep). A load
   * counts as one use of the key, however many callers joined it.
   */
  load(key: string, loader: () => Promise<V>, ttlFor: (value: V) => number): Promise<V> {
    const pending = this.#pending.get(key)
    if (pending !== undefined) return pending
    const hash = this.#entries.get(key)?.hash ?? this.#sketch.hash(key)
    this.#sketch.increment(hash)
    return this.#load(key, loader, ttlFor, hash)
  }

  #load(key: string, loader: () => Promise<V>, ttlFor: (value: V) => number, hash: KeyHash): Promise<V> {
    const pending = this.#pending.get(key)
    if (pending !== undefined) return pending
    const generation = this.#generation
    const promise = loader().then(
      (value) => {
        if (this.#pending.get(key) === promise) this.#pending.delete(key)
        const ttlMs = ttlFor(value)
        if (generation === this.#generation && ttlMs > 0) this.#set(key, value, ttlMs, hash)
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
