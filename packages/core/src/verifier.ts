import { compileAllowlist, type AddressAllowlist } from './address-allowlist.js'
import { LoadingCache } from './cache.js'
import { asStoreError, SaikuStoreError } from './errors.js'
import { timingSafeEqual } from 'node:crypto'
import {
  KEY_ID_LENGTH,
  apiKeyFailure,
  hasApiKeyFrame,
  digestApiKeyBytes,
  digestsEqual,
  sha256Latin1,
  type KeyEnvironment,
} from './keys.js'
import type { ApiKeyRecord, KeyStore } from './store.js'
import { keyStoreTrustCapMs } from './store-events.js'
import { withTimeout } from './timeout.js'
import type { CoreMetrics } from './metrics.js'
import type { StoreCallEnd } from './failure-budget.js'

/** Who a verified credential speaks for. */
export interface VerifiedCredential {
  /** `api_key` for Saiku keys, `jwt` for signed tokens. */
  readonly type: 'api_key' | 'jwt'
  readonly keyId: string
  readonly tenantId: string
  readonly label: string
  readonly environment: KeyEnvironment
  readonly permissions: readonly string[]
  /** When the credential stops working (a key's expiry, a token's `exp`); null for never. */
  readonly expiresAt: Date | null
  /**
   * For a signed token exchanged from an API key (its `key_id` claim): that key's ID.
   * The token works only while that key does.
   */
  readonly sourceKeyId?: string
  /**
   * The addresses the credential works from (a key's `allowedAddresses`; for a token, those of the
   * key it was exchanged from); absent for any address. Checked after the secret, before anything is counted.
   */
  readonly allowlist?: AddressAllowlist
}

/** A key's standing, looked up by ID: null when it works, else why it does not. */
export type KeyState =
  | {
      readonly ok: true
      readonly tenantId: string
      readonly environment: KeyEnvironment
      /** The key's address restriction, which tokens exchanged from it carry too. */
      readonly allowlist?: AddressAllowlist
    }
  | { readonly ok: false; readonly reason: 'unknown_key' | 'revoked' | 'expired' }

/** Why a token was refused. All of them answer the same 401; the reason is for hooks and logs. */
export type VerificationFailure =
  | 'malformed'
  | 'bad_checksum'
  | 'environment_not_accepted'
  | 'unknown_key'
  | 'wrong_secret'
  | 'revoked'
  | 'expired'
  /** A signed token whose signature, claims or algorithm did not hold. */
  | 'invalid_jwt'
  /**
   * The key's stored record holds no usable digest (the store's fault, reported to `onError`):
   * no key can verify against it. Answered 503, and counted against the client as a failure.
   */
  | 'invalid_key_record'

export type VerifyResult =
  | { readonly ok: true; readonly credential: VerifiedCredential }
  | { readonly ok: false; readonly reason: VerificationFailure }

/**
 * Turns a bearer token into a credential or a typed failure. Store failures
 * reject with a SaikuStoreError; they are never a failure result.
 */
export interface KeyVerifier {
  verify(token: string): VerifyResult | Promise<VerifyResult>
  /**
   * Optional: the answer when it needs no I/O (a malformed token, a cached key),
   * else undefined. The pipeline uses it to answer a client blocked for too many
   * failures without asking the store. `nowMs`: the time, when the caller read the clock already.
   */
  verifyWithoutIo?(token: string, nowMs?: number): VerifyResult | undefined
  /** Forgets anything cached about this key (after a revocation). */
  invalidateKey?(keyId: string): void
  /**
   * Optional: the store call in flight for this key ID, settling when the store answers,
   * however long after a request's deadline. The failure budget holds the caller's place
   * among its address's lookups until then.
   */
  storeCallOf?(keyId: string): Promise<StoreCallEnd> | undefined
}

export interface ApiKeyVerifierOptions {
  /** How long a key record is trusted before the store is asked again: the staleness bound for revocations made by other processes. */
  readonly cacheTtlMs: number
  /** How long "no such key" is remembered. */
  readonly negativeCacheTtlMs: number
  readonly cacheMaxEntries: number
  readonly storeTimeoutMs: number
  /** On a store failure, answer from an expired cache entry instead of failing. */
  readonly serveStaleOnStoreError: boolean
  /** How long past its expiry an entry may still be served that way. Default 60000. */
  readonly maxStaleMs?: number
  readonly environments: readonly KeyEnvironment[]
  readonly pepper?: string | Buffer | undefined
  /** Minimum time between two `recordKeyUse` calls for one key. */
  readonly lastUsedResolutionMs: number
  readonly now: () => number
  readonly onStoreError?: ((error: SaikuStoreError) => void) | undefined
  /** Told of a key ID the store says no longer works (revoked, expired, gone), e.g. to withdraw its trust. */
  readonly onKeyWithdrawn?: ((keyId: string) => void) | undefined
  /**
   * Times each `findKey` and counts cache hits and misses: the authenticator's own
   * instruments, handed in when it builds its verifier (`metrics` option).
   *
   * @internal
   */
  readonly metrics?: CoreMetrics | null | undefined
  /**
   * The hashing and comparing steps: default `digestApiKey` bytes and a
   * constant-time compare. Replace them to hash in an HSM, or to observe them.
   */
  readonly primitives?: Partial<VerifierPrimitives> | undefined
}

/** The two steps of checking a secret, replaceable through {@link ApiKeyVerifierOptions.primitives}. */
export interface VerifierPrimitives {
  digest(token: string): Buffer
  /** Must take the same time for any two inputs of one length. */
  equal(a: Uint8Array, b: Uint8Array): boolean
}

/**
 * What the cache keeps of a key, under its key ID: the credential it yields, the
 * stored digest (SHA-256 of the key, or HMAC-SHA-256 under the pepper), its
 * revocation and expiry. Never the key: a presented key is hashed on every
 * request and its digest compared with this one in constant time.
 */
interface CachedKey {
  readonly credential: VerifiedCredential
  /** The stand-in that nothing matches when the stored digest is unusable (`invalidRecord`). */
  readonly digest: Buffer
  /** The stored digest is not one: no key verifies against it. */
  readonly invalidRecord: boolean
  readonly revoked: boolean
  readonly expiresAtMs: number
  /** The answer when the key verifies, built once: results are only read. */
  readonly verified: VerifyResult
}

// Where a key ID starts in a key: after `sk_live_` or `sk_test_`.
const KEY_ID_START = 8

// A digest no key hashes to: compared against when the key ID is unknown, so
// that path costs what a wrong secret for a known ID costs.
const ABSENT_DIGEST = Buffer.alloc(32, 0)

function validTimeOr(time: number, fallback: number): number {
  return Number.isFinite(time) ? time : fallback
}

/**
 * Whether a stored digest can be compared with: whole hex, and with the default
 * digest exactly SHA-256's 64 characters (a store's `secretDigest` as `digestApiKey`
 * writes it). `Buffer.from(…, 'hex')` would silently cut anything else short.
 */
function usableDigest(secretDigest: unknown, anyLength: boolean): secretDigest is string {
  if (typeof secretDigest !== 'string') return false
  return anyLength ? /^(?:[0-9a-fA-F]{2})+$/.test(secretDigest) : /^[0-9a-fA-F]{64}$/.test(secretDigest)
}

function toCachedKey(record: ApiKeyRecord, invalidRecord: boolean): CachedKey {
  // Parsed once per record read, never per request.
  const allowlist = compileAllowlist(record.allowedAddresses)
  const credential: VerifiedCredential = Object.freeze({
    type: 'api_key' as const,
    keyId: record.keyId,
    tenantId: record.tenantId,
    label: record.label,
    environment: record.environment,
    permissions: Object.freeze([...record.permissions]),
    expiresAt: record.expiresAt === null ? null : new Date(record.expiresAt),
    ...(allowlist === null ? {} : { allowlist }),
  })
  return {
    credential,
    verified: Object.freeze({ ok: true, credential }),
    digest: invalidRecord ? ABSENT_DIGEST : Buffer.from(record.secretDigest, 'hex'),
    invalidRecord,
    revoked: record.revokedAt !== null,
    // An expiry the store mangled (an invalid date) counts as expired: never fail open.
    expiresAtMs: record.expiresAt === null ? Infinity : validTimeOr(new Date(record.expiresAt).getTime(), -Infinity),
  }
}

const FAILURES: { readonly [R in VerificationFailure]: VerifyResult } = {
  malformed: { ok: false, reason: 'malformed' },
  bad_checksum: { ok: false, reason: 'bad_checksum' },
  environment_not_accepted: { ok: false, reason: 'environment_not_accepted' },
  unknown_key: { ok: false, reason: 'unknown_key' },
  wrong_secret: { ok: false, reason: 'wrong_secret' },
  revoked: { ok: false, reason: 'revoked' },
  expired: { ok: false, reason: 'expired' },
  invalid_jwt: { ok: false, reason: 'invalid_jwt' },
  invalid_key_record: { ok: false, reason: 'invalid_key_record' },
}

const KEY_UNKNOWN: KeyState = Object.freeze({ ok: false, reason: 'unknown_key' })
const KEY_REVOKED: KeyState = Object.freeze({ ok: false, reason: 'revoked' })
const KEY_EXPIRED: KeyState = Object.freeze({ ok: false, reason: 'expired' })

export interface ApiKeyVerifier extends KeyVerifier {
  verify(token: string): VerifyResult | Promise<VerifyResult>
  verifyWithoutIo(token: string, nowMs?: number): VerifyResult | undefined
  /**
   * The state of a key by its ID alone, without its secret: the key a signed token
   * was exchanged from. From the cache when it holds the key, else from the store
   * (same cache, same bounds); rejects with a SaikuStoreError when the store fails.
   */
  keyState(keyId: string): KeyState | Promise<KeyState>
  invalidateKey(keyId: string): void
  /** Forgets every cached key. */
  clear(): void
  readonly cachedKeys: number
}

/**
 * The default verifier: format and checksum first (no I/O), then the record by
 * key ID through a bounded, TTL'd, single-flight cache, then a constant-time
 * compare of digests.
 */
export function createApiKeyVerifier(store: KeyStore, options: ApiKeyVerifierOptions): ApiKeyVerifier {
  // A cached "no such key" counts only when the store is asked again: repeating garbage never makes it a keeper.
  const cache = new LoadingCache<CachedKey | null>(options.cacheMaxEntries, options.now, {
    hitCounts: (entry) => entry !== null,
  })
  const lastUseRecordedMs = new Map<string, number>()
  const acceptsLive = options.environments.includes('live')
  const acceptsTest = options.environments.includes('test')
  // While a change feed of the store is down, nothing read is trusted longer than the feed allows.
  const ttlFor = (entry: CachedKey | null): number =>
    Math.min(entry === null ? options.negativeCacheTtlMs : options.cacheTtlMs, keyStoreTrustCapMs(store) ?? Infinity)
  const digest = options.primitives?.digest ?? ((token: string): Buffer => digestApiKeyBytes(token, options.pepper))
  const equal = options.primitives?.equal ?? digestsEqual
  const customDigest = options.primitives?.digest !== undefined
  // The default steps without a pepper: SHA-256 returned as a 32-character latin1 string (a Buffer made by
  // the hash costs as much as the hash), copied into this scratch buffer, compared in constant time. It holds
  // a digest, never a key: the last one presented, as the cache holds the digests of the keys that match.
  const presentedDigest = options.primitives === undefined && options.pepper === undefined ? Buffer.alloc(32) : null
  function digestMatches(token: string, expected: Buffer): boolean {
    if (presentedDigest === null) return equal(digest(token), expected)
    presentedDigest.write(sha256Latin1(token), 0, 32, 'latin1')
    return timingSafeEqual(presentedDigest, expected)
  }

  const metrics = options.metrics ?? null

  // The latest store call of each key ID, until the store answers, however long after its deadline: the
  // failure budget holds the caller's place among its address's lookups until then.
  const storeCalls = new Map<string, Promise<StoreCallEnd>>()

  function fetchKey(keyId: string): Promise<CachedKey | null> {
    const started = metrics === null ? 0 : performance.now()
    // A findKey that throws instead of rejecting is a failed call all the same.
    const call = Promise.resolve().then(() => store.findKey(keyId))
    // Timed once: when the store answers, or as a failure when the caller stops waiting first.
    let timed = false
    const time = (ok: boolean): void => {
      if (timed) return
      timed = true
      metrics?.keyStoreCall('findKey', started, ok)
    }
    const fetched = call.then(
      (record) => {
        time(true)
        // Cached like any record, so the store is asked again only when it would be; told once per load, never the digest.
        const invalidRecord = record !== null && !usableDigest(record.secretDigest, customDigest)
        if (invalidRecord) options.onStoreError?.(invalidRecordError(record))
        const entry = record === null ? null : toCachedKey(record, invalidRecord)
        if (entry === null || entry.revoked || entry.expiresAtMs <= options.now()) options.onKeyWithdrawn?.(keyId)
        return entry
      },
      (error: unknown) => {
        time(false)
        throw asStoreError(error, 'key_store', 'key store findKey failed')
      },
    )
    const ended = fetched.then(
      (entry): StoreCallEnd => (entry === null ? 'absent' : 'found'),
      (): StoreCallEnd => 'failed',
    )
    storeCalls.set(keyId, ended)
    void ended.then(() => {
      if (storeCalls.get(keyId) === ended) storeCalls.delete(keyId)
    })
    // Awaited for `storeTimeoutMs` at most: past it the next request asks the store afresh, so a call lost
    // to a dead connection never keeps a key out once the store is back.
    const answered = withTimeout(fetched, options.storeTimeoutMs, 'key_store', 'key store findKey')
    answered.catch(() => time(false))
    return answered
  }

  function loadKey(keyId: string): Promise<CachedKey | null> {
    return cache.load(keyId, () => fetchKey(keyId), ttlFor)
  }

  function recordUse(keyId: string, nowMs: number): void {
    if (store.recordKeyUse === undefined) return
    const last = lastUseRecordedMs.get(keyId)
    if (last !== undefined && nowMs - last < options.lastUsedResolutionMs) return
    // Bounded: forgetting everything only means one extra write per key.
    if (lastUseRecordedMs.size >= options.cacheMaxEntries) lastUseRecordedMs.clear()
    lastUseRecordedMs.set(keyId, nowMs)
    // Best effort: a store whose recordKeyUse throws, hangs or is not async never blocks a request.
    Promise.resolve()
      .then(() => store.recordKeyUse!(keyId, new Date(nowMs)))
      .catch((error: unknown) => {
        options.onStoreError?.(asStoreError(error, 'key_store', 'key store recordKeyUse failed'))
      })
  }

  /**
   * The same steps whatever is presented, so time tells nothing about a wrong
   * secret: a hash, then a constant-time compare of digests (against a stand-in
   * when the key ID is unknown).
   */
  function check(entry: CachedKey | null, token: string, nowMs: number): VerifyResult {
    if (entry === null) {
      digestMatches(token, ABSENT_DIGEST)
      return FAILURES.unknown_key
    }
    if (digestMatches(token, entry.digest)) return standing(entry, nowMs)
    return entry.invalidRecord ? FAILURES.invalid_key_record : FAILURES.wrong_secret
  }

  /** A key whose secret matched: revoked and expired are told apart only now. */
  function standing(entry: CachedKey, nowMs: number): VerifyResult {
    if (entry.revoked) return FAILURES.revoked
    if (entry.expiresAtMs <= nowMs) return FAILURES.expired
    recordUse(entry.credential.keyId, nowMs)
    return entry.verified
  }

  const maxStaleMs = options.maxStaleMs ?? 60_000
  const reportRefreshError = (error: unknown): void =>
    options.onStoreError?.(asStoreError(error, 'key_store', 'key store findKey failed'))

  async function loadOrStale(keyId: string): Promise<CachedKey | null> {
    try {
      return await loadKey(keyId)
    } catch (error) {
      const stale = options.serveStaleOnStoreError ? cache.getStale(keyId, maxStaleMs) : undefined
      if (stale === undefined) throw error
      options.onStoreError?.(asStoreError(error, 'key_store', 'key store findKey failed'))
      return stale
    }
  }

  async function checkAfterLoad(keyId: string, token: string): Promise<VerifyResult> {
    const entry = await loadOrStale(keyId)
    return check(entry, token, options.now())
  }

  /** A key in use is reloaded before it expires, so it never falls out of the cache while the store answers. */
  function refreshAhead(keyId: string, nowMs: number): void {
    cache.refreshIfDue(keyId, nowMs, fetchKey, ttlFor, reportRefreshError)
  }

  /** `counted`: a cache lookup for the metrics (the authenticator tries this first, then `verify` tries it again). */
  function fromCache(token: string, counted: boolean, nowMs = options.now()): VerifyResult | undefined {
    // Length, prefix and separator: a few characters. The full parse (alphabet, checksum) comes below.
    if (!hasApiKeyFrame(token)) return FAILURES.malformed
    if (token.charCodeAt(3) === 108 /* sk_live_ */ ? !acceptsLive : !acceptsTest)
      return FAILURES[apiKeyFailure(token) ?? 'environment_not_accepted']
    const keyId = token.slice(KEY_ID_START, KEY_ID_START + KEY_ID_LENGTH)
    const entry = cache.getFresh(keyId, nowMs)
    if (entry === undefined || entry === null) {
      // Nothing known of this key ID: the checksum turns garbage away before any hash or store lookup.
      const failure = apiKeyFailure(token)
      if (failure !== null) return FAILURES[failure]
      if (counted) metrics?.cache('key', entry !== undefined)
      return entry === undefined ? undefined : check(null, token, nowMs)
    }
    // A cached key: the digest decides. A key that hashes to the stored digest is the minted key, whose
    // characters and checksum hold; a mismatch is parsed in full to say why it failed, as a miss would be.
    if (!digestMatches(token, entry.digest)) {
      const failure = apiKeyFailure(token)
      if (failure !== null) return FAILURES[failure]
      if (counted) metrics?.cache('key', true)
      return entry.invalidRecord ? FAILURES.invalid_key_record : FAILURES.wrong_secret
    }
    if (counted) metrics?.cache('key', true)
    const result = standing(entry, nowMs)
    if (result.ok) refreshAhead(keyId, nowMs)
    return result
  }

  function stateOf(entry: CachedKey | null, nowMs: number): KeyState {
    if (entry === null) return KEY_UNKNOWN
    if (entry.revoked) return KEY_REVOKED
    if (entry.expiresAtMs <= nowMs) return KEY_EXPIRED
    const { tenantId, environment, allowlist } = entry.credential
    return allowlist === undefined
      ? { ok: true, tenantId, environment }
      : { ok: true, tenantId, environment, allowlist }
  }

  function keyState(keyId: string): KeyState | Promise<KeyState> {
    const nowMs = options.now()
    const entry = cache.getFresh(keyId, nowMs)
    if (entry !== undefined) {
      if (entry !== null) refreshAhead(keyId, nowMs)
      return stateOf(entry, nowMs)
    }
    return loadOrStale(keyId).then((loaded) => stateOf(loaded, options.now()))
  }

  return {
    verifyWithoutIo: (token, nowMs) => fromCache(token, true, nowMs),
    keyState,
    verify(token) {
      // A token that parsed has the key ID at a fixed place.
      return fromCache(token, false) ?? checkAfterLoad(token.slice(KEY_ID_START, KEY_ID_START + KEY_ID_LENGTH), token)
    },
    invalidateKey(keyId) {
      cache.delete(keyId)
    },
    storeCallOf: (keyId) => storeCalls.get(keyId),
    clear() {
      cache.clear()
    },
    get cachedKeys() {
      return cache.size
    },
  }
}

/** What `onError` is told of a record that holds no usable digest: the key ID and the digest's form, never its value. */
function invalidRecordError(record: ApiKeyRecord): SaikuStoreError {
  const digest: unknown = record.secretDigest
  const got =
    typeof digest === 'string' ? `${digest.length} characters` : `a ${digest === null ? 'null' : typeof digest}`
  return new SaikuStoreError(
    'key_store',
    `key store record of key ID ${record.keyId} is unusable: secretDigest is not a hex digest as digestApiKey writes it (got ${got}); requests with this key answer 503 until the record is fixed`,
  )
}

/** `keyState` for a custom verifier: straight from the store, with its deadline. */
export function sourceKeyStateFromStore(store: KeyStore, timeoutMs: number): (keyId: string) => Promise<KeyState> {
  return async (keyId) => {
    const record = await withTimeout(store.findKey(keyId), timeoutMs, 'key_store', 'key store findKey')
    if (record === null) return KEY_UNKNOWN
    if (record.revokedAt !== null) return KEY_REVOKED
    if (record.expiresAt !== null && !(record.expiresAt.getTime() > Date.now())) return KEY_EXPIRED
    const allowlist = compileAllowlist(record.allowedAddresses)
    return {
      ok: true,
      tenantId: record.tenantId,
      environment: record.environment,
      ...(allowlist === null ? {} : { allowlist }),
    }
  }
}
