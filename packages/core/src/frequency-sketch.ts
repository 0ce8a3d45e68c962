import { hash as oneShotHash, randomBytes } from 'node:crypto'

/** A counter stops here: four bits' worth is enough to tell steady use from a one-off. */
export const MAX_FREQUENCY = 15

const ROWS = 4
// Below 2^30, so a hash stays a small integer (no heap number on the node that holds it).
const HASH_BITS = 0x3fffffff

/** Where a key's counters are: two hashes, spread over the rows by double hashing. */
export interface KeyHash {
  readonly h1: number
  /** Odd, so that the rows' indexes differ. */
  readonly h2: number
}

/**
 * How often each key was used lately, in bounded memory: a count-min sketch of
 * four rows of byte counters (at least 4 × the entries it is sized for, a row;
 * capped at 15), updated conservatively (only the smallest of a key's counters
 * grow), halved every 10 × entries additions so that old use fades. An estimate
 * is never below the true count since the last halving (capped), and rarely above it.
 *
 * Keys are hashed with SHA-256 under a secret drawn per process, so nobody
 * can choose key IDs that share counters with a key they want to outbid.
 * Hashing happens only when a key is looked up in the store or first kept;
 * a cached key carries its hash, which stays valid when the sketch grows.
 */
export class FrequencySketch {
  #counters: Uint8Array
  // The same bytes, four at a time, for the halving.
  #words: Uint32Array
  #mask: number
  #width: number
  #sampleSize: number
  #additions = 0
  readonly #secret: string

  /** `entries`: how many keys it is sized for now (see `ensureCapacity`). */
  constructor(entries: number, secret: string = randomBytes(16).toString('hex')) {
    this.#secret = secret
    this.#width = 0
    this.#mask = 0
    this.#sampleSize = 0
    this.#counters = new Uint8Array(0)
    this.#words = new Uint32Array(0)
    this.ensureCapacity(entries)
  }

  /** Bytes the counters take: set by the entries it is sized for, however many keys are counted. */
  get byteLength(): number {
    return this.#counters.byteLength
  }

  /**
   * Sized for at least `entries` keys (never shrinks). A cache grows it while it
   * fills, so a small cache with a large bound pays for what it holds; the counts
   * of `kept` (the keys cached) carry over, the rest start afresh.
   */
  ensureCapacity(entries: number, kept: Iterable<KeyHash> = []): void {
    const sized = Math.max(16, entries)
    // Four counters a row per entry (as Caffeine's sketch has), so that a key seen once rarely reads as more;
    // and never fewer than 1,024: two keys share all four counters with odds 1 in width², which in a narrow
    // sketch is enough for a key presented once to outbid a small cache's key in steady use now and then.
    let width = 1024
    while (width < 4 * sized) width *= 2
    if (width <= this.#width) return
    const carried: [KeyHash, number][] = []
    for (const hash of kept) {
      const count = this.frequency(hash)
      if (count > 0) carried.push([hash, count])
    }
    this.#width = width
    this.#mask = width - 1
    this.#counters = new Uint8Array(ROWS * width)
    this.#words = new Uint32Array(this.#counters.buffer)
    this.#sampleSize = 10 * sized
    this.#additions = 0
    for (const [hash, count] of carried) {
      for (let row = 0; row < ROWS; row++) {
        const i = this.#index(hash, row)
        this.#counters[i] = Math.max(this.#counters[i]!, count)
      }
      this.#additions += count
    }
  }

  #index({ h1, h2 }: KeyHash, row: number): number {
    return row * this.#width + ((h1 + row * h2) & this.#mask)
  }

  hash(key: string): KeyHash {
    const digest = oneShotHash('sha256', this.#secret + key, 'buffer')
    return { h1: digest.readUInt32LE(0) & HASH_BITS, h2: (digest.readUInt32LE(4) & HASH_BITS) | 1 }
  }

  /** Counts one use. */
  increment(hash: KeyHash): void {
    const counters = this.#counters
    const mask = this.#mask
    const width = this.#width
    const { h1, h2 } = hash
    const i0 = h1 & mask
    const i1 = width + ((h1 + h2) & mask)
    const i2 = 2 * width + ((h1 + 2 * h2) & mask)
    const i3 = 3 * width + ((h1 + 3 * h2) & mask)
    const min = Math.min(counters[i0]!, counters[i1]!, counters[i2]!, counters[i3]!)
    if (min >= MAX_FREQUENCY) return
    // Conservative update: counters that other keys raised above this key's count stay, which keeps estimates near the truth.
    if (counters[i0] === min) counters[i0] = min + 1
    if (counters[i1] === min) counters[i1] = min + 1
    if (counters[i2] === min) counters[i2] = min + 1
    if (counters[i3] === min) counters[i3] = min + 1
    if (++this.#additions >= this.#sampleSize) this.#halve()
  }

  /** The estimated uses since the counts were last halved, at most MAX_FREQUENCY. */
  frequency(hash: KeyHash): number {
    const counters = this.#counters
    const mask = this.#mask
    const width = this.#width
    const { h1, h2 } = hash
    return Math.min(
      counters[h1 & mask]!,
      counters[width + ((h1 + h2) & mask)]!,
      counters[2 * width + ((h1 + 2 * h2) & mask)]!,
      counters[3 * width + ((h1 + 3 * h2) & mask)]!,
    )
  }

  // Every counter halved, four bytes at a time (no counter exceeds 15, so no bit crosses into its neighbour).
  #halve(): void {
    const words = this.#words
    for (let i = 0; i < words.length; i++) words[i] = (words[i]! >>> 1) & 0x7f7f7f7f
    this.#additions = Math.floor(this.#additions / 2)
  }
}
