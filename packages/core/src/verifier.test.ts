import { createHash } from 'node:crypto'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createKeyManager } from './management.js'
import { mintApiKey, withChecksum } from './keys.js'
import { MemoryKeyStore } from './store.js'
import { createApiKeyVerifier, type ApiKeyVerifierOptions } from './verifier.js'
import { SaikuStoreError } from './errors.js'
import { withTimeout } from './timeout.js'

const tenant = {
  tenantId: 't-1',
  tenantSlug: 'acme',
  tier: 'team',
  connectionName: 'warehouse',
  subscription: { status: 'active' as const },
}

function setup(overrides: Partial<ApiKeyVerifierOptions> = {}) {
  let now = Date.parse('2030-01-01T00:00:00Z')
  const store = new MemoryKeyStore({ tenants: [tenant] })
  const verifier = createApiKeyVerifier(store, {
    cacheTtlMs: 10_000,
    negativeCacheTtlMs: 10_000,
    cacheMaxEntries: 100,
    storeTimeoutMs: 1_000,
    serveStaleOnStoreError: false,
    environments: ['live', 'test'],
    lastUsedResolutionMs: 60_000,
    now: () => now,
    ...overrides,
  })
  return { store, verifier, keys: createKeyManager(store, { now: () => now }), advance: (ms: number) => (now += ms) }
}

describe('createApiKeyVerifier', () => {
  it('verifies a minted key and returns its credential', async () => {
    const { verifier, keys } = setup()
    const created = await keys.create('t-1', { label: 'agent', permissions: ['keys:read'] })
    expect(await verifier.verify(created.key)).toEqual({
      ok: true,
      credential: {
        type: 'api_key',
        keyId: created.keyId,
        tenantId: 't-1',
        label: 'agent',
        environment: 'live',
        permissions: ['keys:read'],
        expiresAt: null,
      },
    })
  })

  it('answers a cached key without the store, synchronously', async () => {
    const { verifier, keys, store } = setup()
    const { key } = await keys.create('t-1', { label: 'agent' })
    await verifier.verify(key)
    const findKey = vi.spyOn(store, 'findKey')
    const result = verifier.verify(key)
    expect(result).not.toBeInstanceOf(Promise)
    expect(findKey).not.toHaveBeenCalled()
  })

  it('asks the store once for many concurrent requests with one key', async () => {
    const { verifier, keys, store } = setup()
    const { key } = await keys.create('t-1', { label: 'agent' })
    const findKey = vi.spyOn(store, 'findKey')
    const results = await Promise.all(Array.from({ length: 100 }, () => Promise.resolve(verifier.verify(key))))
    expect(results.every((r) => r.ok)).toBe(true)
    expect(findKey).toHaveBeenCalledTimes(1)
  })

  it('remembers unknown keys, so a flood of one unknown key asks the store once per TTL', async () => {
    const { verifier, store, advance } = setup({ negativeCacheTtlMs: 1_000 })
    const findKey = vi.spyOn(store, 'findKey')
    const { key } = mintApiKey()
    for (let i = 0; i < 20; i++) expect(await verifier.verify(key)).toEqual({ ok: false, reason: 'unknown_key' })
    expect(findKey).toHaveBeenCalledTimes(1)
    advance(1_000)
    await verifier.verify(key)
    expect(findKey).toHaveBeenCalledTimes(2)
  })

  it('refuses a well-formed key whose secret does not match the stored digest', async () => {
    const { verifier, keys } = setup()
    const created = await keys.create('t-1', { label: 'agent' })
    // Same key ID, another secret, valid checksum: what a guesser holding a leaked key ID sends.
    const secret = created.key.slice(21, 53)
    for (const guess of [mintApiKey().key.slice(21, 53), secret.slice(0, 31) + (secret.endsWith('A') ? 'B' : 'A')]) {
      const forged = withChecksum(`sk_live_${created.keyId}_${guess}`)
      expect(await verifier.verify(forged)).toEqual({ ok: false, reason: 'wrong_secret' })
    }
    expect((await verifier.verify(created.key)).ok).toBe(true)
  })

  it('still refuses a wrong secret after the right one was remembered, and still admits the right one after', async () => {
    const { verifier, keys } = setup()
    const created = await keys.create('t-1', { label: 'agent' })
    const wrong = withChecksum(`sk_live_${created.keyId}_${mintApiKey().key.slice(21, 53)}`)
    expect((await verifier.verify(created.key)).ok).toBe(true)
    expect(await verifier.verify(wrong)).toEqual({ ok: false, reason: 'wrong_secret' })
    expect((await verifier.verify(created.key)).ok).toBe(true)
    expect(await verifier.verify(wrong)).toEqual({ ok: false, reason: 'wrong_secret' })
  })

  it('applies a revocation made through a manager of the same store at once', async () => {
    const { verifier, keys, store } = setup()
    const unsubscribe = (await import('./store-events.js')).onKeyStoreChange(store, (change) => {
      if (change.kind === 'key') verifier.invalidateKey(change.keyId)
    })
    const created = await keys.create('t-1', { label: 'agent' })
    expect((await verifier.verify(created.key)).ok).toBe(true)
    await keys.revoke('t-1', created.keyId)
    expect(await verifier.verify(created.key)).toEqual({ ok: false, reason: 'revoked' })
    unsubscribe()
  })

  it('sees a revocation made elsewhere within the cache TTL, and not before', async () => {
    const { verifier, keys, store, advance } = setup({ cacheTtlMs: 5_000 })
    const created = await keys.create('t-1', { label: 'agent' })
    expect((await verifier.verify(created.key)).ok).toBe(true)
    // Another process revokes: nothing tells this one.
    const record = await store.findKey(created.keyId)
    vi.spyOn(store, 'findKey').mockResolvedValue({ ...record!, revokedAt: new Date() })
    advance(4_999)
    expect((await verifier.verify(created.key)).ok).toBe(true)
    advance(1)
    expect(await verifier.verify(created.key)).toEqual({ ok: false, reason: 'revoked' })
  })

  it('tells a stored digest that is no digest apart from a wrong secret, with a pepper too, and reports it at each load', async () => {
    const errors: SaikuStoreError[] = []
    const { verifier, keys, store, advance } = setup({
      pepper: 'pepper',
      cacheTtlMs: 5_000,
      onStoreError: (e) => errors.push(e),
    })
    const created = await keys.create('t-1', { label: 'agent' })
    const record = (await store.findKey(created.keyId))!
    vi.spyOn(store, 'findKey').mockResolvedValue({ ...record, secretDigest: record.secretDigest.slice(0, 63) })
    for (let i = 0; i < 3; i++)
      expect(await verifier.verify(created.key)).toEqual({ ok: false, reason: 'invalid_key_record' })
    expect(errors.map((e) => e.message)).toEqual([
      `key store record of key ID ${created.keyId} is unusable: secretDigest is not a hex digest as digestApiKey writes it (got 63 characters); requests with this key answer 503 until the record is fixed`,
    ])
    advance(5_000)
    expect(await verifier.verify(created.key)).toEqual({ ok: false, reason: 'invalid_key_record' })
    expect(errors).toHaveLength(2)
  })

  it('takes a stored digest of another length when the digest step is the caller’s', async () => {
    const digest = (token: string) => createHash('sha384').update(token).digest()
    const { verifier, keys, store } = setup({ primitives: { digest } })
    const created = await keys.create('t-1', { label: 'agent' })
    const record = (await store.findKey(created.keyId))!
    vi.spyOn(store, 'findKey').mockResolvedValue({ ...record, secretDigest: digest(created.key).toString('hex') })
    expect((await verifier.verify(created.key)).ok).toBe(true)
  })

  it('refuses an expired key, and a test key where only live keys are accepted', async () => {
    const { verifier, keys, advance } = setup({ environments: ['live'] })
    const expiring = await keys.create('t-1', {
      label: 'short',
      expiresAt: new Date(Date.parse('2030-01-01T00:01:00Z')),
    })
    expect((await verifier.verify(expiring.key)).ok).toBe(true)
    advance(60_000)
    expect(await verifier.verify(expiring.key)).toEqual({ ok: false, reason: 'expired' })
    const testKey = await keys.create('t-1', { label: 'ci', environment: 'test' })
    expect(await verifier.verify(testKey.key)).toEqual({ ok: false, reason: 'environment_not_accepted' })
  })

  it('rejects with a SaikuStoreError when the store fails, and serves stale only when allowed', async () => {
    const strict = setup({ cacheTtlMs: 100 })
    const created = await strict.keys.create('t-1', { label: 'agent' })
    await strict.verifier.verify(created.key)
    strict.advance(100)
    vi.spyOn(strict.store, 'findKey').mockRejectedValue(new Error('down'))
    await expect(strict.verifier.verify(created.key)).rejects.toBeInstanceOf(SaikuStoreError)

    const lenient = setup({ cacheTtlMs: 100, serveStaleOnStoreError: true })
    const key = await lenient.keys.create('t-1', { label: 'agent' })
    await lenient.verifier.verify(key.key)
    lenient.advance(100)
    vi.spyOn(lenient.store, 'findKey').mockRejectedValue(new Error('down'))
    expect((await lenient.verifier.verify(key.key)).ok).toBe(true)
  })

  it('writes lastUsedAt at most once per resolution window', async () => {
    const { verifier, keys, store, advance } = setup({ lastUsedResolutionMs: 60_000 })
    const created = await keys.create('t-1', { label: 'agent' })
    const recordKeyUse = vi.spyOn(store, 'recordKeyUse')
    for (let i = 0; i < 10; i++) await verifier.verify(created.key)
    expect(recordKeyUse).toHaveBeenCalledTimes(1)
    advance(60_000)
    await verifier.verify(created.key)
    expect(recordKeyUse).toHaveBeenCalledTimes(2)
    const [listed] = await store.listKeys('t-1')
    expect(listed?.lastUsedAt).toBeInstanceOf(Date)
  })
})

describe('withTimeout', () => {
  beforeEach(() => vi.useFakeTimers())
  afterEach(() => vi.useRealTimers())

  it('turns a hang into a timed-out SaikuStoreError', async () => {
    const pending = withTimeout(new Promise(() => {}), 250, 'key_store', 'findKey')
    const assertion = expect(pending).rejects.toMatchObject({
      name: 'SaikuStoreError',
      source: 'key_store',
      timedOut: true,
    })
    await vi.advanceTimersByTimeAsync(250)
    await assertion
  })

  it('keeps the cause of a failure', async () => {
    const cause = new Error('ECONNRESET')
    await expect(withTimeout(Promise.reject(cause), 250, 'limiter', 'consume')).rejects.toMatchObject({
      source: 'limiter',
      cause,
    })
  })
})
