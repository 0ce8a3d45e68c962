import * as crypto from 'node:crypto'

/**
 * Key format: `sk_<env>_<keyId>_<secret><checksum>`
 *   env       `live` | `test`
 *   keyId     12 base62 characters: public, shown with the label, indexes the store
 *   secret    32 base62 characters from the CSPRNG: ~190 bits
 *   checksum  6 base62 characters: CRC-32 of everything before it, so a typo or
 *             garbage is rejected without a store lookup
 * Every character is in RFC 6750's b64token alphabet.
 */
export type KeyEnvironment = 'live' | 'test'

export const KEY_ENVIRONMENTS: readonly KeyEnvironment[] = Object.freeze(['live', 'test'])
export const KEY_ID_LENGTH = 12
export const KEY_SECRET_LENGTH = 32
export const KEY_CHECKSUM_LENGTH = 6
const PREFIX_LENGTH = 'sk_live_'.length
const KEY_ID_END = PREFIX_LENGTH + KEY_ID_LENGTH
const CHECKSUMMED_LENGTH = KEY_ID_END + 1 + KEY_SECRET_LENGTH
export const API_KEY_LENGTH: number = CHECKSUMMED_LENGTH + KEY_CHECKSUM_LENGTH

/** Matches a well-formed key anywhere in text, for secret scanners. The checksum still has to be checked. */
export const API_KEY_PATTERN: RegExp = /\bsk_(?:live|test)_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}\b/g

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
// Byte → base62 digit value, or -1.
const BASE62_VALUE = new Int8Array(256).fill(-1)
for (let i = 0; i < BASE62.length; i++) BASE62_VALUE[BASE62.charCodeAt(i)] = i

const CRC_TABLE = new Int32Array(256)
for (let n = 0; n < 256; n++) {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  CRC_TABLE[n] = c
}

/** The running CRC state after `text` (before the final inversion). */
function crcState(text: string, length: number, start = -1): number {
  let crc = start
  for (let i = 0; i < length; i++) crc = CRC_TABLE[(crc ^ text.charCodeAt(i)) & 0xff]! ^ (crc >>> 8)
  return crc
}

/** CRC-32 (IEEE) of the first `length` characters of an ASCII string. */
function crc32(text: string, length: number): number {
  return (crcState(text, length) ^ -1) >>> 0
}

// The CRC state after each fixed prefix, so parsing starts past it.
const CRC_PREFIX = [crcState('sk_live_', 8), crcState('sk_test_', 8)]

function encodeChecksum(value: number): string {
  let out = ''
  for (let i = 0; i < KEY_CHECKSUM_LENGTH; i++) {
    out = BASE62[value % 62] + out
    value = Math.floor(value / 62)
  }
  return out
}

/** Uniform base62 characters from the CSPRNG (rejection sampling, so no modulo bias). */
export function randomBase62(length: number): string {
  let out = ''
  while (out.length < length) {
    const bytes = crypto.randomBytes(length * 2)
    for (let i = 0; i < bytes.length && out.length < length; i++) {
      const byte = bytes[i]!
      if (byte < 248) out += BASE62[byte % 62]
    }
  }
  return out
}

export interface MintedApiKey {
  /** The full secret key. Show it once; it is never stored. */
  readonly key: string
  readonly keyId: string
  readonly environment: KeyEnvironment
}

/** Appends the checksum to `sk_<env>_<keyId>_<secret>`. */
export function withChecksum(body: string): string {
  return body + encodeChecksum(crc32(body, body.length))
}

/** Creates a new random key: a fresh key ID and secret each call. */
export function mintApiKey(environment: KeyEnvironment = 'live'): MintedApiKey {
  const keyId = randomBase62(KEY_ID_LENGTH)
  return { key: withChecksum(`sk_${environment}_${keyId}_${randomBase62(KEY_SECRET_LENGTH)}`), keyId, environment }
}

export type ParsedApiKey =
  | { readonly ok: true; readonly keyId: string; readonly environment: KeyEnvironment }
  | { readonly ok: false; readonly reason: 'malformed' | 'bad_checksum' }

const MALFORMED: ParsedApiKey = Object.freeze({ ok: false, reason: 'malformed' })
const BAD_CHECKSUM: ParsedApiKey = Object.freeze({ ok: false, reason: 'bad_checksum' })

/**
 * Checks shape and checksum without any I/O. Anything that is not byte for byte a
 * minted key is refused here, before hashing or a store lookup.
 */
export function parseApiKey(token: string): ParsedApiKey {
  const failure = apiKeyFailure(token)
  if (failure !== null) return failure === 'malformed' ? MALFORMED : BAD_CHECKSUM
  return {
    ok: true,
    keyId: token.slice(PREFIX_LENGTH, KEY_ID_END),
    environment: token.charCodeAt(3) === 108 /* l */ ? 'live' : 'test',
  }
}

/** A key's length, prefix and separator: the checks of {@link apiKeyFailure} that read no more than a few characters. */
export function hasApiKeyFrame(token: string): boolean {
  return (
    token.length === API_KEY_LENGTH &&
    (token.startsWith('sk_live_') || token.startsWith('sk_test_')) &&
    token.charCodeAt(KEY_ID_END) === 95 /* _ */
  )
}

/**
 * {@link parseApiKey} without building its answer: null for a well-formed key
 * (its key ID is at `sk_live_`.length, its environment `live` when the fourth
 * character is `l`), else why it is not one.
 */
export function apiKeyFailure(token: string): 'malformed' | 'bad_checksum' | null {
  if (!hasApiKeyFrame(token)) return 'malformed'
  const environment = token.charCodeAt(3) === 108 /* l */ ? 0 : 1
  // One pass: check the alphabet and run the CRC over everything before the checksum.
  let crc = CRC_PREFIX[environment]!
  for (let i = PREFIX_LENGTH; i < CHECKSUMMED_LENGTH; i++) {
    const code = token.charCodeAt(i)
    if (i !== KEY_ID_END && (code > 0x7f || BASE62_VALUE[code]! < 0)) return 'malformed'
    crc = CRC_TABLE[(crc ^ code) & 0xff]! ^ (crc >>> 8)
  }
  let checksum = 0
  for (let i = CHECKSUMMED_LENGTH; i < API_KEY_LENGTH; i++) {
    const code = token.charCodeAt(i)
    if (code > 0x7f || BASE62_VALUE[code]! < 0) return 'malformed'
    checksum = checksum * 62 + BASE62_VALUE[code]!
  }
  return checksum === (crc ^ -1) >>> 0 ? null : 'bad_checksum'
}

/** Whether a string has the shape of a key ID (what URLs and stores carry). */
export function isKeyId(value: unknown): value is string {
  if (typeof value !== 'string' || value.length !== KEY_ID_LENGTH) return false
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i)
    if (code > 0x7f || BASE62_VALUE[code]! < 0) return false
  }
  return true
}

const hashOnce: ((algorithm: string, data: string, encoding: 'buffer' | 'latin1') => Buffer | string) | undefined = (
  crypto as { hash?: (algorithm: string, data: string, encoding: 'buffer' | 'latin1') => Buffer | string }
).hash

/**
 * What a store keeps instead of the key: hex SHA-256 of the full key, or
 * HMAC-SHA-256 under `pepper` when one is configured (then a leaked table alone
 * cannot be checked against guesses). Keys carry ~190 random bits, so a fast
 * hash is enough and a slow one would only make every request a CPU target.
 */
export function digestApiKey(key: string, pepper?: string | Buffer): string {
  return digestApiKeyBytes(key, pepper).toString('hex')
}

/**
 * SHA-256 of a key as a 32-character latin1 string, one character per byte: the
 * cheapest form to get from the hash (returning a Buffer costs as much again).
 * {@link digestApiKeyBytes} without a pepper, in another form.
 */
export function sha256Latin1(key: string): string {
  if (hashOnce !== undefined) return hashOnce('sha256', key, 'latin1') as string
  return crypto.createHash('sha256').update(key).digest('binary')
}

/** {@link digestApiKey} as bytes: what the verifier compares. */
export function digestApiKeyBytes(key: string, pepper?: string | Buffer): Buffer {
  if (pepper !== undefined) return crypto.createHmac('sha256', pepper).update(key).digest()
  if (hashOnce !== undefined) return hashOnce('sha256', key, 'buffer') as Buffer
  return crypto.createHash('sha256').update(key).digest()
}

/**
 * Constant-time equality of two digests. Unequal lengths return false without
 * throwing and without an early exit (timingSafeEqual would throw).
 */
export function digestsEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) {
    crypto.timingSafeEqual(a, a)
    return false
  }
  return crypto.timingSafeEqual(a, b)
}

/** A short, non-reversible fingerprint of a key for logs: never log the key itself. */
export function keyFingerprint(key: string): string {
  return digestApiKeyBytes(key).toString('hex').slice(0, 12)
}
