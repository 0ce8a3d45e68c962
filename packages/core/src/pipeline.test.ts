import { describe, expect, it, vi } from 'vitest'
import { installFakeClock } from './testing.js'
import { createAuthenticator } from './authenticator.js'
import { createMemoryLimiter } from './memory-limiter.js'
import type { AuthDecision, DecisionEvent } from './decision.js'
import { SaikuStoreError } from './errors.js'
import type { ErrorResponse } from './http.js'
import { MemoryKeyStore, type KeyStore } from './store.js'

const acme = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'w',
  subscription: { status: 'active' as const },
}
const request = (authorization?: string) => ({
  headers: authorization === undefined ? {} : { authorization },
  method: 'GET',
  url: '/me/tenant?x=1',
  ip: '127.0.0.1',
})

describe('createAuthenticator', () => {
  it('throws at construction on a bad store or option, never at the first request', () => {
    expect(() => createAuthenticator({} as KeyStore)).toThrow('store: expected a KeyStore with findKey and findTenant')
    expect(() => createAuthenticator(new MemoryKeyStore(), { tiers: { team: { perMinute: 5, perHour: 1 } } })).toThrow(
      'tiers.team.perHour: expected at least perMinute (5), got 1',
    )
  })

  /** An authenticator whose decisions are told as "status reason", with a key of acme's; no failure budget. */
  async function toldAuthenticator() {
    const told: string[] = []
    const auth = createAuthenticator(new MemoryKeyStore({ tenants: [acme] }), {
      failedAuth: false,
      onDecision: (event) => told.push(`${event.status} ${event.reason}`),
    })
    const { key } = await auth.keys.create('t-acme', { label: 'agent' })
    return { told, auth, key }
  }

  it("refuses a token of a key's length and prefix that is no b64token as the bearer scan does, cached key or not", async () => {
    const { told, auth, key } = await toldAuthenticator()
    const replaced = (at: number, character: string): string => key.slice(0, at) + character + key.slice(at + 1)
    for (const cached of [false, true]) {
      if (cached) expect((await auth.authenticate(request(`Bearer ${key}`))).ok).toBe(true)
      told.length = 0
      // In the key ID, the secret and the checksum.
      for (const at of [10, 40, 68]) {
        for (const character of ['!', 'é', ' ', ','])
          await auth.authenticate(request(`Bearer ${replaced(at, character)}`))
      }
      const each = [
        '401 malformed_credentials',
        '401 malformed_credentials',
        '400 ambiguous_credentials',
        '400 ambiguous_credentials',
      ]
      expect(told).toEqual([...each, ...each, ...each])
    }
  })

  it('counts a memory backend given with a clock of its own on that clock, not on the time the pipeline read', async () => {
    let backendNowMs = Date.parse('2030-01-01T00:00:00Z')
    const backend = createMemoryLimiter({ now: () => backendNowMs })
    const auth = createAuthenticator(new MemoryKeyStore({ tenants: [acme] }), { limiter: { backend } })
    const { key } = await auth.keys.create('t-acme', { label: 'agent' })
    const first = await auth.authenticate(request(`Bearer ${key}`))
    expect(first.ok && first.headers.ratelimit).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
    // Only the backend's clock moves: its windows are 30 s older, whatever Date.now says.
    backendNowMs += 30_000
    const second = await auth.authenticate(request(`Bearer ${key}`))
    expect(second.ok && second.headers.ratelimit).toBe('"minute";r=58;t=30, "hour";r=998;t=3570')
  })

  it('tells a tampered key of a cached key ID by the same reason as one never seen', async () => {
    const { told, auth, key } = await toldAuthenticator()
    const last = key.at(-1) === 'A' ? 'B' : 'A'
    const tampered = [
      key.slice(0, -1) + last, // the checksum no longer matches
      key.slice(0, 40) + '-' + key.slice(41), // a b64token character outside base62
      key.slice(0, 20) + '-' + key.slice(21), // the separator after the key ID
    ]
    for (const token of tampered) await auth.authenticate(request(`Bearer ${token}`))
    const uncached = told.splice(0)
    expect(uncached).toEqual(['401 bad_checksum', '401 malformed', '401 malformed'])
    expect((await auth.authenticate(request(`Bearer ${key}`))).ok).toBe(true)
    told.length = 0
    for (const token of tampered) await auth.authenticate(request(`Bearer ${token}`))
    expect(told).toEqual(uncached)
  })

  it('reports decisions to onDecision without the key, and with the path but not the query', async () => {
    const events: DecisionEvent[] = []
    const auth = createAuthenticator(new MemoryKeyStore({ tenants: [acme] }), {
      onDecision: (event) => events.push(event),
    })
    const { key, keyId } = await auth.keys.create('t-acme', { label: 'agent' })
    await auth.authenticate(request(`Bearer ${key}`))
    // Another last character: the checksum no longer matches.
    await auth.authenticate(request(`Bearer ${key.slice(0, -1)}${key.endsWith('x') ? 'y' : 'x'}`))
    await auth.authenticate(request())
    expect(events).toEqual([
      {
        status: 200,
        code: null,
        reason: 'admitted',
        method: 'GET',
        path: '/me/tenant',
        ip: '127.0.0.1',
        keyId,
        tenantId: 't-acme',
        enforced: true,
      },
      {
        status: 401,
        code: 'unauthorized',
        reason: expect.stringMatching(/bad_checksum|malformed/),
        method: 'GET',
        path: '/me/tenant',
        ip: '127.0.0.1',
        keyId: null,
        tenantId: null,
        enforced: true,
      },
      {
        status: 401,
        code: 'unauthorized',
        reason: 'missing_credentials',
        method: 'GET',
        path: '/me/tenant',
        ip: '127.0.0.1',
        keyId: null,
        tenantId: null,
        enforced: true,
      },
    ])
    expect(JSON.stringify(events)).not.toContain(key.slice(21))
  })

  it('keeps answering when a hook throws', async () => {
    const auth = createAuthenticator(new MemoryKeyStore({ tenants: [acme] }), {
      onDecision: () => {
        throw new Error('logger down')
      },
    })
    const { key } = await auth.keys.create('t-acme', { label: 'agent' })
    expect((await auth.authenticate(request(`Bearer ${key}`))).ok).toBe(true)
  })

  it('answers 401 when the key’s tenant no longer exists', async () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const auth = createAuthenticator(store)
    const { key } = await auth.keys.create('t-acme', { label: 'agent' })
    vi.spyOn(store, 'findTenant').mockResolvedValue(null)
    const decision = await auth.authenticate(request(`Bearer ${key}`))
    expect(decision).toMatchObject({ ok: false, status: 401, code: 'unauthorized' })
  })

  it('answers 500 and reports a tenant whose tier the table cannot serve, never a silent default', async () => {
    const errors: Error[] = []
    const store = new MemoryKeyStore({ tenants: [acme] })
    const auth = createAuthenticator(store, { onError: (error) => errors.push(error) })
    const { key } = await auth.keys.create('t-acme', { label: 'agent' })
    vi.spyOn(store, 'findTenant').mockResolvedValue({ ...acme, tier: 'enterprise', limits: null })
    const decision = await auth.authenticate(request(`Bearer ${key}`))
    expect(decision).toMatchObject({ ok: false, status: 500, code: 'internal_error' })
    expect(errors[0]?.message).toBe(
      'tenants["acme"].limits: expected { perMinute, perHour } for the custom tier "enterprise", got null',
    )
  })

  it('lets a tenant through without a subscription when subscriptions are not required', async () => {
    const store = new MemoryKeyStore({ tenants: [{ ...acme, subscription: { status: 'none' as const } }] })
    const auth = createAuthenticator(store, { subscription: { required: false } })
    const { key } = await auth.keys.create('t-acme', { label: 'agent' })
    expect((await auth.authenticate(request(`Bearer ${key}`))).ok).toBe(true)
  })

  it('accepts a custom verifier in place of API keys', async () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const auth = createAuthenticator(store, {
      verifier: {
        verify: (token) =>
          token === 'let-me-in'
            ? {
                ok: true,
                credential: {
                  type: 'api_key',
                  keyId: 'custom',
                  tenantId: 't-acme',
                  label: 'custom',
                  environment: 'live',
                  permissions: [],
                  expiresAt: null,
                },
              }
            : { ok: false, reason: 'unknown_key' },
      },
    })
    expect((await auth.authenticate(request('Bearer let-me-in'))).ok).toBe(true)
    expect((await auth.authenticate(request('Bearer nope'))).ok).toBe(false)
  })

  it('follows a clock faked after it was built: expiry, trials and windows move together', async () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const auth = createAuthenticator(store, { cache: { ttlMs: 0 } })
    const start = Date.parse('2030-01-01T00:00:00Z')
    const clock = installFakeClock(start)
    try {
      const { key } = await auth.keys.create('t-acme', { label: 'short', expiresAt: new Date(start + 60_000) })
      expect((await auth.authenticate(request(`Bearer ${key}`))).ok).toBe(true)
      clock.advance(60_000)
      expect(await auth.authenticate(request(`Bearer ${key}`))).toMatchObject({ ok: false, status: 401 })
    } finally {
      clock.restore()
    }
  })

  it('treats a key whose stored expiry is not a valid date as expired', async () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const auth = createAuthenticator(store)
    const { key, keyId } = await auth.keys.create('t-acme', { label: 'agent' })
    const record = await store.findKey(keyId)
    vi.spyOn(store, 'findKey').mockResolvedValue({ ...record!, expiresAt: new Date('not a date') })
    expect(await auth.authenticate(request(`Bearer ${key}`))).toMatchObject({ ok: false, status: 401 })
  })

  it.each([
    ['a digest cut short', (digest: string): unknown => digest.slice(0, 62)],
    ['a digest too long', (digest: string): unknown => `${digest}00`],
    ['a digest that is no hex', (): unknown => 'z'.repeat(64)],
    ['no digest', (): unknown => null],
  ])(
    'answers a key whose stored record holds %s with a 503, tells onError its key ID once per load, and counts it as a failure',
    async (_name, corrupt) => {
      const errors: Error[] = []
      const told: string[] = []
      const store = new MemoryKeyStore({ tenants: [acme] })
      const auth = createAuthenticator(store, {
        failedAuth: { perMinute: 5 },
        onError: (error) => errors.push(error),
        onDecision: (event) => told.push(`${event.status} ${event.reason}`),
      })
      const { key, keyId } = await auth.keys.create('t-acme', { label: 'agent' })
      const record = (await store.findKey(keyId))!
      const stored = corrupt(record.secretDigest)
      const findKey = vi.spyOn(store, 'findKey').mockResolvedValue({ ...record, secretDigest: stored as string })
      const answers: AuthDecision[] = []
      for (let i = 0; i < 7; i++) answers.push(await auth.authenticate(request(`Bearer ${key}`)))
      expect(answers[0]).toMatchObject({ ok: false, status: 503, code: 'service_unavailable' })
      expect(JSON.parse((answers[0] as ErrorResponse).body)).toEqual({
        error: 'service_unavailable',
        message: 'The service is temporarily unavailable. Retry shortly.',
      })
      // Metered as any key that does not verify: past the budget, the failed-authentication 429.
      expect(told).toEqual([
        ...Array<string>(5).fill('503 invalid_key_record'),
        ...Array<string>(2).fill('429 too_many_failures'),
      ])
      // The fault is cached like the record: the store was asked once, and onError told once.
      expect(findKey).toHaveBeenCalledTimes(1)
      expect(errors).toHaveLength(1)
      expect(errors[0]).toBeInstanceOf(SaikuStoreError)
      expect(errors[0]!.message).toContain(`key store record of key ID ${keyId} is unusable`)
      if (typeof stored === 'string') expect(errors[0]!.message).not.toContain(stored.slice(0, 8))
    },
  )

  it('times out a custom verifier like a store', async () => {
    const auth = createAuthenticator(new MemoryKeyStore({ tenants: [acme] }), {
      keyStoreTimeoutMs: 20,
      verifier: { verify: () => new Promise(() => {}) },
    })
    expect(await auth.authenticate(request('Bearer anything'))).toMatchObject({
      ok: false,
      status: 503,
      code: 'service_unavailable',
    })
  })
})

describe('limiter insurance', () => {
  it('counts in this process while the shared backend fails, when the policy is open', async () => {
    const errors: Error[] = []
    const auth = createAuthenticator(new MemoryKeyStore({ tenants: [acme] }), {
      tiers: { starter: { perMinute: 3, perHour: 10 } },
      limiter: { backend: { consume: () => Promise.reject(new Error('ECONNREFUSED')) }, insurance: true },
      failurePolicy: { limiter: 'open' },
      onError: (error) => errors.push(error),
    })
    const { key } = await auth.keys.create('t-acme', { label: 'agent' })
    const decisions = []
    for (let i = 0; i < 5; i++) decisions.push(await auth.authenticate(request(`Bearer ${key}`)))
    expect(decisions.map((d) => (d.ok ? 200 : d.status))).toEqual([200, 200, 200, 429, 429])
    expect(decisions[0]).toMatchObject({ ok: true, headers: { ratelimit: '"minute";r=2;t=60, "hour";r=9;t=3600' } })
    expect(errors).toHaveLength(5)
    expect(() => createAuthenticator(new MemoryKeyStore(), { limiter: { insurance: 'yes' as never } })).toThrow(
      'limiter.insurance: expected a boolean or a LimiterBackend',
    )
  })
  it('keeps its insurance counts within limiter.maxTenants, as the memory backend does', async () => {
    const beta = { ...acme, tenantId: 't-beta', tenantSlug: 'beta' }
    const auth = createAuthenticator(new MemoryKeyStore({ tenants: [acme, beta] }), {
      tiers: { starter: { perMinute: 2, perHour: 10 } },
      limiter: {
        backend: { consume: () => Promise.reject(new Error('ECONNREFUSED')) },
        insurance: true,
        maxTenants: 1,
      },
      failurePolicy: { limiter: 'open' },
    })
    const { key: acmeKey } = await auth.keys.create('t-acme', { label: 'a' })
    const { key: betaKey } = await auth.keys.create('t-beta', { label: 'b' })
    const status = async (key: string) => {
      const decision = await auth.authenticate(request(`Bearer ${key}`))
      return decision.ok ? 200 : decision.status
    }
    expect([await status(acmeKey), await status(acmeKey), await status(acmeKey)]).toEqual([200, 200, 429])
    // One tenant counted at most: beta's first request makes the insurance forget acme's counts.
    expect(await status(betaKey)).toBe(200)
    expect(auth.stats().countedTenants).toBeNull()
    expect(await status(acmeKey)).toBe(200)
  })
})

describe('the failed-authentication budget across a window boundary', () => {
  it('never gives a failed-auth point spent before a window boundary back into the next window', async () => {
    const clock = installFakeClock(Date.parse('2030-01-01T00:00:00Z'))
    try {
      const store = new MemoryKeyStore({ tenants: [acme] })
      const auth = createAuthenticator(store, { failedAuth: { perMinute: 2 } })
      const { key } = await auth.keys.create('t-acme', { label: 'agent' })
      expect(await auth.authenticate(request('Bearer garbage'))).toMatchObject({ status: 401 })
      // A lookup that spends the minute's second point just before the boundary and verifies after it.
      let release!: () => void
      const held = new Promise<void>((resolve) => (release = resolve))
      const findKey = store.findKey.bind(store)
      vi.spyOn(store, 'findKey').mockImplementationOnce(async (keyId) => {
        await held
        return findKey(keyId)
      })
      clock.advance(59_000)
      const pending = auth.authenticate(request(`Bearer ${key}`))
      clock.advance(2_000)
      expect(await auth.authenticate(request('Bearer garbage'))).toMatchObject({ status: 401 })
      expect(await auth.authenticate(request('Bearer garbage'))).toMatchObject({ status: 401 })
      release()
      expect(await pending).toMatchObject({ ok: true })
      // The new minute has spent its two points: the next failure is refused, not given an extra one.
      expect(await auth.authenticate(request('Bearer garbage'))).toMatchObject({ status: 429 })
    } finally {
      clock.restore()
    }
  })

  it('reports no key or token that a client put in the path, a matrix parameter or a raw fragment', async () => {
    const events: DecisionEvent[] = []
    const auth = createAuthenticator(new MemoryKeyStore({ tenants: [acme] }), {
      onDecision: (event) => events.push(event),
    })
    const { key } = await auth.keys.create('t-acme', { label: 'agent' })
    const jwt = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl'
    const urls = [
      `/me/tenant;access_token=${key}`,
      `/me/tenant#${key}`,
      `/me/${key}/x`,
      `/me/${key.replaceAll('_', '%5F')}`,
      `/me/tenant;token=${jwt}`,
      `/me/${jwt}`,
      `/me/tenant;api_key=opaque-secret-value`,
    ]
    for (const url of urls) await auth.authenticate({ ...request(`Bearer ${key}`), url })
    const paths = events.map((event) => event.path)
    expect(paths).toEqual([
      '/me/tenant;access_token=[redacted]',
      '/me/tenant',
      '/me/[redacted]/x',
      '/me/[redacted]',
      '/me/tenant;token=[redacted]',
      '/me/[redacted]',
      '/me/tenant;api_key=[redacted]',
    ])
    expect(JSON.stringify(events)).not.toContain(key.slice(8))
    expect(JSON.stringify(events)).not.toContain('opaque-secret-value')
  })
})

describe('many first requests with one valid key', () => {
  it('are all verified, however many arrive while its lookup is under way, and spend none of the client’s failure budget', async () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const auth = createAuthenticator(store, { failedAuth: { perMinute: 3 } })
    const { key } = await auth.keys.create('t-acme', { label: 'agent' })
    // The store answers only when told to: every request arrives before the first lookup ends.
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    const findKey = store.findKey.bind(store)
    const lookups = vi.spyOn(store, 'findKey').mockImplementation(async (keyId) => {
      await gate
      return findKey(keyId)
    })
    const pending = Array.from({ length: 20 }, () => auth.authenticate(request(`Bearer ${key}`)))
    release()
    const decisions = await Promise.all(pending)
    expect(decisions.map((d) => (d.ok ? 200 : d.status))).toEqual(Array(20).fill(200))
    expect(lookups).toHaveBeenCalledTimes(1)
    // The budget is whole: three unknown keys still get 401, the fourth 429.
    const unknown = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        auth.authenticate(request(`Bearer ${key.slice(0, 8)}Zzzzzzzzzzz${i}${key.slice(20)}`)),
      ),
    )
    expect(unknown.map((d) => (d.ok ? 200 : d.status)).sort()).toEqual([401, 401, 401, 429])
  })
})

describe('a backend that answers synchronously and throws', () => {
  const throwing = () => {
    const backend = createMemoryLimiter()
    return Object.assign(backend, {
      consumeSync: (): never => {
        throw new Error('counts lost')
      },
    })
  }

  it('fails closed with a 503 and the error reported as the limiter’s, never a 500', async () => {
    const errors: Error[] = []
    const auth = createAuthenticator(new MemoryKeyStore({ tenants: [acme] }), {
      limiter: { backend: throwing() },
      onError: (error) => errors.push(error),
    })
    const { key } = await auth.keys.create('t-acme', { label: 'agent' })
    const decision = await auth.authenticate(request(`Bearer ${key}`))
    expect(decision).toMatchObject({ ok: false, status: 503 })
    expect(errors).toMatchObject([{ name: 'SaikuStoreError', source: 'limiter' }])
  })

  it('fails open onto the insurance limiter, which counts the request', async () => {
    const auth = createAuthenticator(new MemoryKeyStore({ tenants: [acme] }), {
      limiter: { backend: throwing(), insurance: true },
      failurePolicy: { limiter: 'open' },
      onError: () => {},
    })
    const { key } = await auth.keys.create('t-acme', { label: 'agent' })
    const first = await auth.authenticate(request(`Bearer ${key}`))
    const second = await auth.authenticate(request(`Bearer ${key}`))
    expect(first.ok && second.ok).toBe(true)
    expect(second.headers['ratelimit']).toBe('"minute";r=58;t=60, "hour";r=998;t=3600')
  })
})
