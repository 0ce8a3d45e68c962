// Per-key address allowlists and rotation with a grace period, through the key manager and the authenticator.
import { exportJWK, generateKeyPair } from 'jose'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { allowedAddressesProblem, canonicalAllowedAddresses, compileAllowlist } from './address-allowlist.js'
import { createAuthenticator } from './authenticator.js'
import type { AdmittedDecision, AuthDecision, DecisionEvent } from './decision.js'
import { SaikuConfigError, SaikuInputError } from './errors.js'
import { createTokenIssuer } from './jwt.js'
import { createKeyManager } from './management.js'
import { MemoryKeyStore, type ApiKeyRecord, type KeyStore } from './store.js'

const tenant = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'w',
  subscription: { status: 'active' as const },
}
const request = (token: string, ip: string | undefined) => ({
  headers: { authorization: `Bearer ${token}` },
  method: 'GET',
  url: '/me/tenant',
  ip,
})

afterEach(() => {
  vi.useRealTimers()
})

describe('allowedAddressesProblem', () => {
  it.each([
    ['10.0.0.1/33', 'allowedAddresses[0] "10.0.0.1/33" must have a prefix length from 0 to 32'],
    ['10.0.0.1/8', 'allowedAddresses[0] "10.0.0.1/8" has bits set past its /8 prefix (the range is "10.0.0.0/8")'],
    [
      '::ffff:10.0.0.0/104',
      'allowedAddresses[0] "::ffff:10.0.0.0/104" is an IPv4-mapped IPv6 address: write it as IPv4 (such as "10.0.0.0/8")',
    ],
    [' 10.0.0.1', 'allowedAddresses[0] " 10.0.0.1" is not an IP address or CIDR range'],
    ['10.0.0.0/ 8', 'allowedAddresses[0] "10.0.0.0/ 8" must have a prefix length from 0 to 32'],
    ['fe80::1%eth0', 'allowedAddresses[0] "fe80::1%eth0" must not carry a zone ID'],
    ['', 'allowedAddresses[0] must be a non-empty string, got an empty string'],
    [7, 'allowedAddresses[0] must be a non-empty string, got a number'],
    [null, 'allowedAddresses[0] must be a non-empty string, got null'],
    ['10.1', 'allowedAddresses[0] "10.1" is not an IP address or CIDR range'],
    ['010.0.0.1', 'allowedAddresses[0] "010.0.0.1" is not an IP address or CIDR range'],
    [
      '2001:db8::1/32',
      'allowedAddresses[0] "2001:db8::1/32" has bits set past its /32 prefix (the range is "2001:db8::/32")',
    ],
    ['[2001:db8::1]', 'allowedAddresses[0] "[2001:db8::1]" is not an IP address or CIDR range'],
  ])('refuses %j, saying why', (entry, message) => {
    expect(allowedAddressesProblem([entry])).toBe(message)
  })

  it('refuses a list that is not one, and 10,000 entries by their count alone', () => {
    expect(allowedAddressesProblem('10.0.0.0/8')).toBe(
      'allowedAddresses must be an array of IP addresses and CIDR ranges, or null',
    )
    const huge = Array.from({ length: 10_000 }, () => '10.0.0.1/33')
    expect(allowedAddressesProblem(huge)).toBe('allowedAddresses must hold at most 32 entries, got 10000')
    expect(allowedAddressesProblem(huge.slice(0, 32).fill('10.0.0.1'))).toBeNull()
    expect(allowedAddressesProblem(null)).toBeNull()
    expect(allowedAddressesProblem([])).toBeNull()
  })

  it('writes entries in one canonical form, repeats once', () => {
    expect(
      canonicalAllowedAddresses(['2001:DB8:0:0::/32', '10.0.0.1/32', '10.0.0.1', '2001:db8::/32', '::1/128']),
    ).toEqual(['2001:db8::/32', '10.0.0.1', '::1'])
  })

  it('matches full addresses: IPv4-mapped clients as IPv4, IPv6 never folded into its /64', () => {
    const list = compileAllowlist(['10.0.0.0/8', '2001:db8::1'])!
    expect(list.allows('10.200.0.7')).toBe(true)
    expect(list.allows('::ffff:10.200.0.7')).toBe(true)
    expect(list.allows('11.0.0.1')).toBe(false)
    expect(list.allows('::ffff:11.0.0.1')).toBe(false)
    expect(list.allows('2001:db8::1')).toBe(true)
    // The same /64 as the allowed address: the failure budget would count it with it, the allowlist does not.
    expect(list.allows('2001:db8::2')).toBe(false)
    expect(list.allows(undefined)).toBe(false)
    expect(list.allows('unknown')).toBe(false)
    expect(compileAllowlist([])).toBeNull()
    expect(compileAllowlist(null)).toBeNull()
  })
})

describe('a key with allowed addresses', () => {
  function setup(options: Parameters<typeof createAuthenticator>[1] = {}) {
    const store = new MemoryKeyStore({ tenants: [tenant] })
    const events: DecisionEvent[] = []
    const auth = createAuthenticator(store, {
      ...options,
      onDecision: async (event) => {
        events.push(event)
        // A hook that rejects changes nothing about the decision.
        throw new Error('audit sink down')
      },
      onError: false,
    })
    return { store, auth, events }
  }

  it('is refused from elsewhere with a 403 that spends no rate-limit and no failure-budget points', async () => {
    const { auth, events } = setup({ failedAuth: { perMinute: 2 } })
    const { key, keyId, allowedAddresses } = await auth.keys.create('t-acme', {
      label: 'office',
      allowedAddresses: ['203.0.113.0/24'],
    })
    expect(allowedAddresses).toEqual(['203.0.113.0/24'])
    const admitted = await auth.authenticate(request(key, '203.0.113.9'))
    expect(admitted.ok).toBe(true)
    const before = await auth.usage('t-acme')
    for (let i = 0; i < 10; i++) {
      const refused = (await auth.authenticate(request(key, '198.51.100.4'))) as Exclude<AuthDecision, { ok: true }>
      expect(refused).toMatchObject({ ok: false, status: 403 })
      expect(JSON.parse(refused.body)).toEqual({
        error: 'forbidden',
        message: 'This API key cannot be used from this address.',
      })
    }
    // Ten refusals, a failure budget of two a minute: still a 403, never the budget's 429, and nothing counted.
    expect((await auth.usage('t-acme'))?.minute).toEqual(before?.minute)
    expect((await auth.authenticate(request(key, '203.0.113.9'))).ok).toBe(true)
    const refusals = events.filter((event) => event.status === 403)
    expect(refusals).toHaveLength(10)
    expect(refusals[0]).toMatchObject({
      code: 'forbidden',
      reason: 'address_not_allowed',
      keyId,
      tenantId: 't-acme',
      ip: '198.51.100.4',
      enforced: true,
    })
    auth.close()
  })

  it('is reported and let through under report-only authentication, like the 401s', async () => {
    const { auth, events } = setup({ reportOnly: { authentication: true } })
    const { key, keyId } = await auth.keys.create('t-acme', { label: 'office', allowedAddresses: ['203.0.113.0/24'] })
    const decision = await auth.authenticate(request(key, '198.51.100.4'))
    expect(decision).toMatchObject({
      ok: false,
      status: 403,
      unverified: { status: 403, code: 'forbidden', reason: 'address_not_allowed' },
    })
    expect(events.at(-1)).toMatchObject({ status: 403, reason: 'address_not_allowed', keyId, enforced: false })
    expect((await auth.usage('t-acme'))?.minute?.used).toBe(0)
    auth.close()
  })

  it('admits an IPv4-mapped IPv6 client of an allowed IPv4 range, and refuses an unknown address', async () => {
    const { auth } = setup()
    const { key } = await auth.keys.create('t-acme', { label: 'office', allowedAddresses: ['10.1.0.0/16'] })
    expect((await auth.authenticate(request(key, '::ffff:10.1.2.3'))).ok).toBe(true)
    expect(await auth.authenticate(request(key, undefined))).toMatchObject({ ok: false, status: 403 })
    expect(await auth.authenticate(request(key, '::ffff:10.2.2.3'))).toMatchObject({ ok: false, status: 403 })
    auth.close()
  })

  it('follows an update at once: a cached key is read again, and the owner can lock out every address but one', async () => {
    const { auth } = setup()
    const { key, keyId } = await auth.keys.create('t-acme', { label: 'agent' })
    expect((await auth.authenticate(request(key, '192.0.2.1'))).ok).toBe(true)
    const updated = await auth.keys.update('t-acme', keyId, { allowedAddresses: ['192.0.2.2'], label: 'agent-2' })
    expect(updated).toMatchObject({ keyId, label: 'agent-2', allowedAddresses: ['192.0.2.2'] })
    expect(await auth.authenticate(request(key, '192.0.2.1'))).toMatchObject({ ok: false, status: 403 })
    expect((await auth.authenticate(request(key, '192.0.2.2'))).ok).toBe(true)
    // Lifted: any address again.
    const lifted = await auth.keys.update('t-acme', keyId, { allowedAddresses: null })
    expect(lifted).not.toHaveProperty('allowedAddresses')
    expect((await auth.authenticate(request(key, '192.0.2.1'))).ok).toBe(true)
    auth.close()
  })

  it('passes its restriction to the tokens exchanged from it', async () => {
    const pair = await generateKeyPair('ES256', { extractable: true })
    const privateKey = { ...(await exportJWK(pair.privateKey)), kid: 'server-1' }
    const issuer = createTokenIssuer({ privateKey, issuer: 'https://api.test', audience: 'https://api.test' })
    const { auth } = setup({
      jwt: {
        key: issuer.jwks().keys[0]!,
        issuer: 'https://api.test',
        audience: 'https://api.test',
        algorithms: ['ES256'],
      },
    })
    const { key } = await auth.keys.create('t-acme', { label: 'office', allowedAddresses: ['203.0.113.0/24'] })
    const viaKey = (await auth.authenticate(request(key, '203.0.113.9'))) as AdmittedDecision
    const { accessToken } = await issuer.issue(viaKey.principal.credential)
    expect((await auth.authenticate(request(accessToken, '203.0.113.10'))).ok).toBe(true)
    expect(await auth.authenticate(request(accessToken, '198.51.100.4'))).toMatchObject({ ok: false, status: 403 })
    auth.close()
  })
})

describe('key management: update and rotate', () => {
  it('refuses bad input with the field named', async () => {
    const store = new MemoryKeyStore({ tenants: [tenant] })
    const keys = createKeyManager(store)
    const { keyId } = await keys.create('t-acme', { label: 'agent' })
    await expect(keys.create('t-acme', { label: 'x', allowedAddresses: ['10.0.0.1/8'] })).rejects.toMatchObject({
      field: 'allowedAddresses',
      message: 'allowedAddresses[0] "10.0.0.1/8" has bits set past its /8 prefix (the range is "10.0.0.0/8").',
    })
    await expect(keys.update('t-acme', keyId, { permissions: ['*'] } as never)).rejects.toMatchObject({
      field: 'permissions',
      message: 'permissions cannot be changed; only label and allowedAddresses can.',
    })
    await expect(keys.update('t-acme', keyId, { label: '' })).rejects.toBeInstanceOf(SaikuInputError)
    for (const graceSeconds of [-1, 1.5, 2_592_001, Number.NaN, '60' as never]) {
      await expect(keys.rotate('t-acme', keyId, { graceSeconds })).rejects.toMatchObject({
        field: 'graceSeconds',
        message: 'graceSeconds must be a whole number of seconds from 0 to 2592000 (30 days).',
      })
    }
    // Nothing was minted by the refused rotations.
    expect(await keys.list('t-acme')).toHaveLength(1)
  })

  it("answers null for another tenant's, a revoked or an unknown key", async () => {
    const store = new MemoryKeyStore({ tenants: [tenant, { ...tenant, tenantId: 't-other', tenantSlug: 'other' }] })
    const keys = createKeyManager(store)
    const { keyId } = await keys.create('t-other', { label: 'theirs' })
    expect(await keys.update('t-acme', keyId, { label: 'mine' })).toBeNull()
    expect(await keys.rotate('t-acme', keyId, { graceSeconds: 0 })).toBeNull()
    expect(await keys.update('t-acme', 'nope', { label: 'mine' })).toBeNull()
    await keys.revoke('t-other', keyId)
    expect(await keys.update('t-other', keyId, { label: 'mine' })).toBeNull()
    expect((await store.findKey(keyId))?.label).toBe('theirs')
  })

  it('rotates with a grace: both keys work until it ends, then only the new one, and tokens of the old die with it', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(new Date('2026-12-06T00:00:00Z'))
    const pair = await generateKeyPair('ES256', { extractable: true })
    const privateKey = { ...(await exportJWK(pair.privateKey)), kid: 'server-1' }
    const issuer = createTokenIssuer({ privateKey, issuer: 'https://api.test', audience: 'https://api.test' })
    const store = new MemoryKeyStore({ tenants: [tenant] })
    const auth = createAuthenticator(store, {
      jwt: {
        key: issuer.jwks().keys[0]!,
        issuer: 'https://api.test',
        audience: 'https://api.test',
        algorithms: ['ES256'],
      },
      onError: false,
    })
    const old = await auth.keys.create('t-acme', {
      label: 'agent',
      permissions: ['keys:read'],
      environment: 'test',
      allowedAddresses: ['192.0.2.0/24'],
    })
    const viaOld = (await auth.authenticate(request(old.key, '192.0.2.1'))) as AdmittedDecision
    const { accessToken } = await issuer.issue(viaOld.principal.credential, { ttlSeconds: 900 })

    const rotated = (await auth.keys.rotate('t-acme', old.keyId, { graceSeconds: 600 }))!
    expect(rotated).toMatchObject({
      label: 'agent',
      permissions: ['keys:read'],
      environment: 'test',
      allowedAddresses: ['192.0.2.0/24'],
      expiresAt: null,
      previousKey: { keyId: old.keyId, expiresAt: new Date('2026-12-06T00:10:00Z') },
    })
    expect(rotated.keyId).not.toBe(old.keyId)
    expect((await store.findKey(old.keyId))?.expiresAt).toEqual(new Date('2026-12-06T00:10:00Z'))
    for (const token of [old.key, rotated.key, accessToken])
      expect((await auth.authenticate(request(token, '192.0.2.1'))).ok).toBe(true)
    // One tenant, one count: both keys spend it.
    expect((await auth.usage('t-acme'))?.minute?.used).toBe(4)

    vi.setSystemTime(new Date('2026-12-06T00:10:00Z'))
    expect(await auth.authenticate(request(old.key, '192.0.2.1'))).toMatchObject({ ok: false, status: 401 })
    expect(await auth.authenticate(request(accessToken, '192.0.2.1'))).toMatchObject({ ok: false, status: 401 })
    expect((await auth.authenticate(request(rotated.key, '192.0.2.1'))).ok).toBe(true)
    // The old key cannot be rotated again once it has ended.
    expect(await auth.keys.rotate('t-acme', old.keyId, { graceSeconds: 0 })).toBeNull()
    auth.close()
  })

  it('ends the old key at once with a grace of 0, and never lengthens an expiry that comes sooner', async () => {
    const store = new MemoryKeyStore({ tenants: [tenant] })
    const auth = createAuthenticator(store, { onError: false })
    const now = await auth.keys.create('t-acme', { label: 'now' })
    await auth.keys.rotate('t-acme', now.keyId, { graceSeconds: 0 })
    expect(await auth.authenticate(request(now.key, '192.0.2.1'))).toMatchObject({ ok: false, status: 401 })

    const expiresAt = new Date(Date.now() + 60_000)
    const soon = await auth.keys.create('t-acme', { label: 'soon', expiresAt })
    const rotated = (await auth.keys.rotate('t-acme', soon.keyId, { graceSeconds: 86_400 }))!
    expect(rotated.previousKey.expiresAt).toEqual(expiresAt)
    expect(rotated.expiresAt).toEqual(expiresAt)
    expect((await store.findKey(soon.keyId))?.expiresAt).toEqual(expiresAt)

    // Without a grace, today's rotation: the old key keeps working.
    const kept = await auth.keys.create('t-acme', { label: 'kept' })
    const plain = (await auth.keys.rotate('t-acme', kept.keyId))!
    expect(plain.previousKey).toEqual({ keyId: kept.keyId, expiresAt: null })
    expect((await auth.authenticate(request(kept.key, '192.0.2.1'))).ok).toBe(true)
    auth.close()
  })
})

describe('a store without updateKey, or one that drops allowedAddresses', () => {
  /** The store a user wrote before updateKey existed: every method but that one. */
  function legacyStore(): KeyStore {
    const inner = new MemoryKeyStore({ tenants: [tenant] })
    return {
      findKey: (keyId) => inner.findKey(keyId),
      findTenant: (tenantId) => inner.findTenant(tenantId),
      createKey: (record) => inner.createKey(record),
      listKeys: (tenantId) => inner.listKeys(tenantId),
      revokeKey: (keyId, at) => inner.revokeKey(keyId, at),
    }
  }

  it('throws a configuration error for an allowlist, an edit or a graced rotation, and still does the rest', async () => {
    const keys = createKeyManager(legacyStore())
    const { keyId } = await keys.create('t-acme', { label: 'plain' })
    const expected =
      'store.updateKey: expected a KeyStore method to keep an allowlist (MemoryKeyStore, @saiku/sqlite and @saiku/postgres have it), got undefined'
    await expect(keys.create('t-acme', { label: 'x', allowedAddresses: ['10.0.0.0/8'] })).rejects.toThrow(expected)
    await expect(keys.create('t-acme', { label: 'x', allowedAddresses: ['10.0.0.0/8'] })).rejects.toBeInstanceOf(
      SaikuConfigError,
    )
    await expect(keys.update('t-acme', keyId, { label: 'y' })).rejects.toThrow(/^store\.updateKey: .* to keep an edit/)
    await expect(keys.rotate('t-acme', keyId, { graceSeconds: 60 })).rejects.toThrow(
      /^store\.updateKey: .* to keep a rotation grace period/,
    )
    // An empty allowlist asks nothing of the store; a plain rotation neither.
    await expect(keys.create('t-acme', { label: 'x', allowedAddresses: [] })).resolves.toMatchObject({ label: 'x' })
    await expect(keys.rotate('t-acme', keyId)).resolves.toMatchObject({ label: 'plain' })
  })

  it('revokes a key whose store dropped its allowlist, and says so', async () => {
    const inner = new MemoryKeyStore({ tenants: [tenant] })
    const dropping: KeyStore = {
      findKey: (keyId) => inner.findKey(keyId),
      findTenant: (tenantId) => inner.findTenant(tenantId),
      // Written before the field existed: copies the columns it knows.
      createKey: ({ allowedAddresses: _dropped, ...record }: ApiKeyRecord) => inner.createKey(record),
      listKeys: (tenantId) => inner.listKeys(tenantId),
      revokeKey: (keyId, at) => inner.revokeKey(keyId, at),
      updateKey: async () => true,
    }
    const keys = createKeyManager(dropping)
    const error = await keys
      .create('t-acme', { label: 'office', allowedAddresses: ['10.0.0.0/8'] })
      .catch((thrown: unknown) => thrown)
    expect(error).toBeInstanceOf(SaikuConfigError)
    expect((error as Error).message).toMatch(
      /^store\.createKey: expected a KeyStore that keeps a key's allowedAddresses/,
    )
    expect(await inner.listKeys('t-acme')).toEqual([])
    const { keyId } = await keys.create('t-acme', { label: 'plain' })
    await expect(keys.update('t-acme', keyId, { allowedAddresses: ['10.0.0.0/8'] })).rejects.toThrow(
      /^store\.updateKey: expected a KeyStore that keeps/,
    )
    expect((await inner.findKey(keyId))?.revokedAt).not.toBeNull()
  })
})
