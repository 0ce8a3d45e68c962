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
 * How often each key was used lately, in fixed memory: a count-min sketch of
 * four rows of byte counters (at least 4 × `expectedEntries` a row, capped at 15),
 * updated conservatively (only the smallest of a key's counters grow), halved
 * every `10 × expectedEntries` additions so that old use fades. An estimate is never below the true count
 * since the last halving (capped), and rarely above it.
 *
 * Keys are hashed with SHA-256 under a secret drawn per process, so nobody
 * can choose key IDs that share counters with a key they want to outbid.
 * Hashing happens only when a key is looked up in the store or first kept;
 * a cached key carries its hash.
 */
export class FrequencySketch {
  readonly #counters: Uint8Array
  // The same bytes, four at a time, for the halving.
  readonly #words: Uint32Array
  readonly #mask: number
  readonly #width: number
  readonly #sampleSize: number
  readonly #secret: string
  #additions = 0

  constructor(expectedEntries: number, secret: string = randomBytes(16).toString('hex')) {
    const entries = Math.max(16, expectedEntries)
    // Four counters a row per entry (as Caffeine's sketch has), so that a key seen once rarely reads as more.
    let width = 64
    while (width < 4 * entries) width *= 2
    this.#width = width
    this.#mask = width - 1
    this.#counters = new Uint8Array(ROWS * width)
    this.#words = new Uint32Array(this.#counters.buffer)
    this.#sampleSize = 10 * entries
    this.#secret = secret
  }

  /** Bytes the counters take: fixed at construction, however many keys are counted. */
  get byteLength(): number {
    return this.#counters.byteLength
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
