// What only the core decides, tested once here with createAuthenticator rather than through every
// adapter and framework major: how an Authorization header is read, which keys and tokens pass, the
// window arithmetic and per-route cost, IPv6 /64 grouping, the failed-authentication budget, and the
// failure policies of the key store and the limiter (closed, serve-stale, open, timeouts). The adapter
// conformance suite (test/conformance) keeps what an adapter can get wrong: the mapping of the request
// in, and of the decision onto the wire.
import { createTestSigner, type TestSigner } from '@saiku/test-support/signed-tokens'
import { exportJWK, generateKeyPair } from 'jose'
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import { JSON_CONTENT_TYPE, type HeaderMap } from './http.js'
import { createTokenIssuer } from './jwt.js'
import { mintApiKey } from './keys.js'
import type { LimiterBackend } from './limiter.js'
import { createRateLimiterBackend } from './rate-limiter-flexible.js'
import type { CreatedApiKey } from './management.js'
import type { SaikuOptions } from './options.js'
import { createAuthenticator, type Authenticator } from './authenticator.js'
import { MemoryKeyStore, type TenantRecord } from './store.js'
import { installFakeClock, type FakeClock } from './testing.js'
import { DEFAULT_TIERS } from './tiers.js'

const T0 = Date.parse('2030-01-01T00:00:00.000Z')
const SPEC_402 = 'This feature requires an active subscription or trial. Visit /billing to start your 14-day trial.'
const UNAUTHORIZED_BODY = { error: 'unauthorized', message: 'API key missing or invalid.' }
const BARE_CHALLENGE = 'Bearer realm="saiku"'
const INVALID_TOKEN_CHALLENGE =
  'Bearer realm="saiku", error="invalid_token", error_description="The API key is malformed, unknown, expired or revoked"'

function tenant(slug: string, fields: Partial<TenantRecord> = {}): TenantRecord {
  return {
    tenantId: `00000000-0000-4000-8000-${slug.padEnd(12, '0').slice(0, 12)}`,
    tenantSlug: slug,
    tier: 'starter',
    connectionName: `${slug}-warehouse`,
    subscription: { status: 'active', trialEndsAt: null },
    ...fields,
  }
}

const acme = tenant('acme')
const globex = tenant('globex', { tier: 'team' })
const unpaid = tenant('unpaid', { subscription: { status: 'none' } })
const lapsed = tenant('lapsed', { subscription: { status: 'trialing', trialEndsAt: new Date(T0 - 1) } })
const trial = tenant('trial', { subscription: { status: 'trialing', trialEndsAt: new Date(T0 + 14 * 86_400_000) } })
const enterprise = tenant('enterprise', { tier: 'enterprise', limits: { perMinute: 5, perHour: 100 } })
const tiny = tenant('tiny', { tier: 'tiny' })
const pair = tenant('pair', { tier: 'pair' })

/** An authenticator, and how many requests it admitted (what an app's handler would have run). */
interface CoreApp {
  readonly authenticator: Authenticator
  hits: number
}

/** A decision as an adapter would write it: status, headers, and the body (the tenant when admitted). */
interface Reply {
  readonly status: number
  readonly headers: HeaderMap
  readonly body: Record<string, unknown>
  readonly text: string
}

function expectJsonError(res: Reply, status: number, error: string, message?: string): void {
  expect(res.status).toBe(status)
  expect(res.headers['content-type']).toBe(JSON_CONTENT_TYPE)
  expect(Object.keys(res.body).sort()).toEqual(['error', 'message'])
  expect(res.body.error).toBe(error)
  expect(typeof res.body.message).toBe('string')
  if (message !== undefined) expect(res.body.message).toBe(message)
}

// What left the core during these cases: hook payloads, and the headers and bodies of every decision.
const told: string[] = []
const secrets = new Set<string>()

describe('decisions made in the core, whatever the adapter', () => {
  let store: MemoryKeyStore
  let clock: FakeClock
  let apps: CoreApp[]

  beforeEach(() => {
    clock = installFakeClock(T0)
    store = new MemoryKeyStore({
      tenants: [acme, globex, unpaid, lapsed, trial, enterprise],
      tiers: { ...DEFAULT_TIERS, tiny: { perMinute: 3, perHour: 5 }, pair: { perMinute: 3, perHour: 6 } },
    })
    store.putTenant(tiny)
    store.putTenant(pair)
    apps = []
  })
  afterEach(() => {
    for (const app of apps) app.authenticator.close()
    clock.restore()
  })

  function start(options: SaikuOptions = {}): CoreApp {
    const authenticator = createAuthenticator(store, {
      ...options,
      tiers: { tiny: { perMinute: 3, perHour: 5 }, ...options.tiers },
      // Every hook payload is kept, to check at the end that none holds a key.
      onDecision: (event) => {
        told.push(JSON.stringify(event))
        options.onDecision?.(event)
      },
      onError: (error) => {
        told.push(`${error.name}: ${error.message} ${JSON.stringify(error)}`)
        if (options.onError) options.onError(error)
      },
    })
    const app = { authenticator, hits: 0 }
    apps.push(app)
    return app
  }

  async function mint(
    app: CoreApp,
    owner: TenantRecord,
    permissions: string[] = [],
    label = 'production-agent',
  ): Promise<CreatedApiKey> {
    const created = await app.authenticator.keys.create(owner.tenantId, { label, permissions })
    secrets.add(created.key)
    return created
  }

  /** A GET with these request headers, from this client address. */
  async function answer(app: CoreApp, path: string, headers: Record<string, string>, ip = '127.0.0.1'): Promise<Reply> {
    const decision = await app.authenticator.authenticate({ headers, method: 'GET', url: path, ip })
    told.push(JSON.stringify(decision.headers), decision.ok ? '' : decision.body)
    if (!decision.ok)
      return {
        status: decision.status,
        headers: decision.headers,
        body: JSON.parse(decision.body) as Record<string, unknown>,
        text: decision.body,
      }
    if (decision.principal === null) throw new Error('a GET was passed on as a preflight')
    app.hits++
    const text = JSON.stringify(decision.principal.tenant)
    return { status: 200, headers: decision.headers, body: JSON.parse(text) as Record<string, unknown>, text }
  }

  /** A GET with `key` as its bearer token, if any, and other request headers. */
  const get = (app: CoreApp, path: string, key?: string, headers: Record<string, string> = {}, ip?: string) =>
    answer(app, path, key === undefined ? headers : { ...headers, authorization: `Bearer ${key}` }, ip)
  /** A GET of /me/tenant with this Authorization header, as sent. */
  const send = (app: CoreApp, authorization: string) => answer(app, '/me/tenant', { authorization })
  const from = (app: CoreApp, key: string, ip?: string) => get(app, '/me/tenant', key, {}, ip)

  describe('credentials', () => {
    it.each(['Basic dXNlcjpwYXNz', 'Token abc', 'Bearerabc'])('treats scheme %j as no credentials', async (header) => {
      const app = start()
      const findKey = vi.spyOn(store, 'findKey')
      const res = await send(app, header)
      expectJsonError(res, 401, 'unauthorized')
      expect(res.headers['www-authenticate']).toBe(BARE_CHALLENGE)
      expect(findKey).not.toHaveBeenCalled()
    })

    it.each(['bearer', 'BEARER', 'BeArEr'])('accepts the scheme spelled %s', async (scheme) => {
      const app = start()
      const key = await mint(app, acme)
      const res = await send(app, `${scheme} ${key.key}`)
      expect(res.status).toBe(200)
    })

    it('accepts several spaces after the scheme', async () => {
      const app = start()
      const key = await mint(app, acme)
      const res = await send(app, `Bearer   ${key.key}`)
      expect(res.status).toBe(200)
    })

    it.each([
      ['an empty token', 'Bearer'],
      ['only spaces', 'Bearer    '],
      ['garbage', 'Bearer hello'],
      ['a tab separator', 'Bearer\tsk_live_x'],
      ['characters outside b64token', 'Bearer sk_live_abc;def'],
      ['a 4 KB token', `Bearer sk_live_${'a'.repeat(4096)}`],
    ])('answers %s with 401 invalid_token and no store lookup', async (_name, header) => {
      const app = start()
      const findKey = vi.spyOn(store, 'findKey')
      const res = await send(app, header)
      expectJsonError(res, 401, 'unauthorized', UNAUTHORIZED_BODY.message)
      expect(res.headers['www-authenticate']).toBe(INVALID_TOKEN_CHALLENGE)
      expect(findKey).not.toHaveBeenCalled()
    })

    it('refuses a key with a bad checksum or a non-ASCII character before any store lookup', async () => {
      const app = start()
      const { key } = await mint(app, acme)
      const findKey = vi.spyOn(store, 'findKey')
      const last = key.at(-1) === 'a' ? 'b' : 'a'
      for (const bad of [
        key.slice(0, -1) + last,
        key.slice(0, 30) + 'é' + key.slice(31),
        key.replace('sk_live_', 'sk_prod_'),
      ]) {
        const res = await get(app, '/me/tenant', bad)
        expectJsonError(res, 401, 'unauthorized', UNAUTHORIZED_BODY.message)
        expect(res.headers['www-authenticate']).toBe(INVALID_TOKEN_CHALLENGE)
      }
      expect(findKey).not.toHaveBeenCalled()
    })

    it('refuses a key one millisecond after it expires, not before', async () => {
      const app = start({ cache: { ttlMs: 60_000 } })
      const key = await app.authenticator.keys.create(acme.tenantId, {
        label: 'exact',
        expiresAt: new Date(T0 + 5_000),
      })
      clock.set(T0 + 4_999)
      expect((await get(app, '/me/tenant', key.key)).status).toBe(200)
      clock.set(T0 + 5_000)
      expect((await get(app, '/me/tenant', key.key)).status).toBe(401)
    })

    it.each([
      ['two tokens', (key: string) => `Bearer ${key} ${key}`],
      ['a list of credentials', (key: string) => `Bearer ${key},Bearer ${key}`],
    ])('answers %s in one header with 400', async (_name, header) => {
      const app = start()
      const { key } = await mint(app, acme)
      const res = await send(app, header(key))
      expectJsonError(res, 400, 'invalid_request')
    })

    it('refuses test keys where only live keys are accepted', async () => {
      const app = start({ environments: ['live'] })
      const testKey = await app.authenticator.keys.create(acme.tenantId, { label: 'ci', environment: 'test' })
      expect((await get(app, '/me/tenant', testKey.key)).status).toBe(401)
      const liveKey = await mint(app, acme)
      expect((await get(app, '/me/tenant', liveKey.key)).status).toBe(200)
    })
  })

  describe('subscriptions', () => {
    it('admits a running trial and refuses a lapsed one', async () => {
      const app = start()
      expect((await get(app, '/me/tenant', (await mint(app, trial)).key)).status).toBe(200)
      const res = await get(app, '/me/tenant', (await mint(app, lapsed)).key)
      expectJsonError(res, 402, 'payment_required', SPEC_402)
    })
  })

  describe('fixed windows', () => {
    it('never lets a refused minute consume the hour (minute 3, hour 5)', async () => {
      const app = start({ rateLimitHeaders: 'legacy' })
      const { key } = await mint(app, tiny)
      for (let i = 0; i < 3; i++) expect((await get(app, '/me/tenant', key)).status).toBe(200)
      const fourth = await get(app, '/me/tenant', key)
      expect(fourth.status).toBe(429)
      expect(fourth.headers['x-ratelimit-remaining-minute']).toBe('0')
      expect(fourth.headers['x-ratelimit-remaining-hour']).toBe('2')
      expect(fourth.headers['retry-after']).toBe('60')
      for (let i = 0; i < 50; i++) expect((await get(app, '/me/tenant', key)).status).toBe(429)

      clock.set(T0 + 61_000)
      const after = await get(app, '/me/tenant', key)
      expect(after.status).toBe(200)
      expect(after.headers['x-ratelimit-remaining-hour']).toBe('1')
    })

    it('answers an exhausted hour with the hour’s Retry-After', async () => {
      const app = start()
      const { key } = await mint(app, tiny)
      for (let i = 0; i < 3; i++) expect((await get(app, '/me/tenant', key)).status).toBe(200)
      clock.set(T0 + 61_000)
      for (let i = 0; i < 2; i++) expect((await get(app, '/me/tenant', key)).status).toBe(200)
      // The minute still has 1 left; the hour is spent.
      const byHour = await get(app, '/me/tenant', key)
      expectJsonError(byHour, 429, 'rate_limited', 'Rate limit exceeded: 5 requests per hour. Retry in 3539 s.')
      expect(byHour.headers['retry-after']).toBe('3539')
      expect(byHour.headers['ratelimit']).toBe('"minute";r=1;t=60, "hour";r=0;t=3539')
      expect(app.hits).toBe(5)
    })

    it('answers with the later Retry-After when both windows are spent', async () => {
      const app = start({ tiers: { pair: { perMinute: 3, perHour: 6 } } })
      const { key } = await mint(app, pair)
      for (let i = 0; i < 3; i++) expect((await get(app, '/me/tenant', key)).status).toBe(200)
      clock.set(T0 + 61_000)
      for (let i = 0; i < 3; i++) expect((await get(app, '/me/tenant', key)).status).toBe(200)
      clock.set(T0 + 70_000)
      const both = await get(app, '/me/tenant', key)
      expectJsonError(both, 429, 'rate_limited', 'Rate limit exceeded: 6 requests per hour. Retry in 3530 s.')
      expect(both.headers['retry-after']).toBe('3530')
      expect(both.headers['ratelimit']).toBe('"minute";r=0;t=51, "hour";r=0;t=3530')
      expect(app.hits).toBe(6)
    })

    it('keeps the minute window running across the hour’s end: at most twice the minute limit within 6 ms', async () => {
      const app = start()
      const { key } = await mint(app, acme)
      let admitted = 0
      for (const [at, times] of [
        [0, 1],
        [3_539_995, 1],
        [3_599_994, 59],
        [3_599_995, 60],
        [3_600_000, 60],
      ] as const) {
        clock.set(T0 + at)
        for (let i = 0; i < times; i++) if ((await get(app, '/me/tenant', key)).status === 200) admitted++
      }
      // 1 + 1 + 59 + 60 (a new minute at 3,599,995); at 3,600,000 that minute is spent. The old code admitted 179.
      expect(admitted).toBe(121)
      expect(app.hits).toBe(121)
      const refused = await get(app, '/me/tenant', key)
      expect(refused.status).toBe(429)
      expect(refused.headers['ratelimit']).toBe('"minute";r=0;t=60, "hour";r=1000;t=3600')
      expect(refused.headers['retry-after']).toBe('60')
    })

    it('shares one budget between two keys of a tenant', async () => {
      const app = start()
      const a = await mint(app, acme, [], 'agent-a')
      const b = await mint(app, acme, [], 'agent-b')
      for (let i = 0; i < 30; i++) {
        expect((await get(app, '/me/tenant', a.key)).status).toBe(200)
        expect((await get(app, '/me/tenant', b.key)).status).toBe(200)
      }
      expect((await get(app, '/me/tenant', a.key)).status).toBe(429)
      expect((await get(app, '/me/tenant', b.key)).status).toBe(429)
      // Another tenant's budget is untouched.
      expect((await get(app, '/me/tenant', (await mint(app, globex)).key)).headers['ratelimit']).toBe(
        '"minute";r=299;t=60, "hour";r=9999;t=3600',
      )
    })

    it('applies an enterprise tenant’s own limits', async () => {
      const app = start()
      const { key } = await mint(app, enterprise)
      for (let i = 0; i < 5; i++) {
        const res = await get(app, '/me/tenant', key)
        expect(res.status).toBe(200)
        expect(res.headers['ratelimit-policy']).toBe('"minute";q=5;w=60, "hour";q=100;w=3600')
      }
      expect((await get(app, '/me/tenant', key)).status).toBe(429)
    })

    it('applies a tier change on the next request without resetting the count', async () => {
      const app = start()
      const { key } = await mint(app, acme)
      for (let i = 0; i < 60; i++) await get(app, '/me/tenant', key)
      expect((await get(app, '/me/tenant', key)).status).toBe(429)
      store.putTenant({ ...acme, tier: 'team' })
      const upgraded = await get(app, '/me/tenant', key)
      expect(upgraded.status).toBe(200)
      expect(upgraded.body.tier).toBe('team')
      expect(upgraded.headers['ratelimit']).toBe('"minute";r=239;t=60, "hour";r=9939;t=3600')
      store.putTenant({ ...acme, tier: 'starter' })
      expect((await get(app, '/me/tenant', key)).status).toBe(429)
    })

    it('does not count refused credentials or missing subscriptions against anyone', async () => {
      const app = start()
      const { key } = await mint(app, acme)
      for (let i = 0; i < 5; i++) await get(app, '/me/tenant', mintApiKey().key)
      await get(app, '/me/tenant', (await mint(app, unpaid)).key)
      expect((await get(app, '/me/tenant', key)).headers['ratelimit']).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
    })
  })

  describe('per-route cost', () => {
    // The test decides each request's cost with a header, so bad values can be sent as they are.
    const costOption = (): Pick<SaikuOptions, 'cost'> => ({
      cost: ({ request: req }) => {
        const sent = req.headers['x-cost']
        if (sent === 'throw') throw new Error('cost table bug')
        return sent === undefined ? 1 : sent === 'text' ? (sent as unknown as number) : Number(sent)
      },
    })
    const costing = (app: CoreApp, path: string, key: string, cost: number | string) =>
      get(app, path, key, { 'x-cost': String(cost) })

    it('neither counts nor refuses a request that costs 0, and tells the counts as they stand', async () => {
      const events: string[] = []
      const app = start({ ...costOption(), onDecision: (e) => events.push(e.reason) })
      const { key } = await mint(app, tiny)
      for (let i = 0; i < 3; i++) expect((await get(app, '/me/tenant', key)).status).toBe(200)
      expect((await get(app, '/me/tenant', key)).status).toBe(429)
      for (let i = 0; i < 10; i++) {
        const free = await costing(app, '/me/tenant', key, 0)
        expect(free.status).toBe(200)
        expect(free.headers['ratelimit']).toBe('"minute";r=0;t=60, "hour";r=2;t=3600')
        expect(free.headers['retry-after']).toBeUndefined()
      }
      expect(app.hits).toBe(13)
      expect(events.filter((reason) => reason === 'admitted_free')).toHaveLength(10)
      clock.set(T0 + 61_000)
      const after = await get(app, '/me/tenant', key)
      expect(after.headers['ratelimit']).toBe('"minute";r=2;t=60, "hour";r=1;t=3539')
    })

    it('takes a cost of n from both windows at once, or nothing (memory, rate-limiter-flexible)', async () => {
      const backends: [string, NonNullable<SaikuOptions['limiter']>][] = [
        ['memory', {}],
        ['rate-limiter-flexible', { backend: createRateLimiterBackend() }],
      ]
      // Redis: 'takes a cost of n in one round trip, all or nothing, fixed and rolling' in @saiku/redis.
      for (const [name, limiter] of backends) {
        const app = start({ ...costOption(), limiter })
        const { key } = await mint(app, tiny, [], name)
        const hits = app.hits
        const two = await costing(app, '/me/tenant', key, 2)
        expect(two.status, name).toBe(200)
        expect(two.headers['ratelimit']).toMatch(/^"minute";r=1;t=60, "hour";r=3;t=3600$/)
        const refused = await costing(app, '/me/tenant', key, 2)
        expectJsonError(
          refused,
          429,
          'rate_limited',
          'Rate limit exceeded: 3 requests per minute. This request costs 2; 1 left. Retry in 60 s.',
        )
        expect(refused.headers['retry-after']).toBe('60')
        // Nothing was taken from either window.
        expect(refused.headers['ratelimit']).toMatch(/^"minute";r=1;t=60, "hour";r=3;t=3600$/)
        const one = await costing(app, '/me/tenant', key, 1)
        expect(one.status).toBe(200)
        expect(one.headers['ratelimit']).toMatch(/^"minute";r=0;t=60, "hour";r=2;t=3600$/)
        expect(app.hits - hits).toBe(2)
      }
    })

    it('waits for the window short of the cost, then admits it: Retry-After names the hour when the hour lacks room', async () => {
      const app = start(costOption())
      const { key } = await mint(app, tiny)
      expect((await costing(app, '/me/tenant', key, 3)).status).toBe(200)
      clock.set(T0 + 61_000)
      const byHour = await costing(app, '/me/tenant', key, 3)
      expectJsonError(
        byHour,
        429,
        'rate_limited',
        'Rate limit exceeded: 5 requests per hour. This request costs 3; 2 left. Retry in 3539 s.',
      )
      expect(byHour.headers['retry-after']).toBe('3539')
      expect(byHour.headers['ratelimit']).toBe('"minute";r=3;t=60, "hour";r=2;t=3539')
      expect((await costing(app, '/me/tenant', key, 2)).status).toBe(200)
      clock.set(T0 + 3_600_000)
      expect((await costing(app, '/me/tenant', key, 3)).status).toBe(200)
    })

    it('answers a cost larger than a window with a 429 that says it can never pass, without Retry-After or counting', async () => {
      const events: string[] = []
      const app = start({ ...costOption(), onDecision: (e) => events.push(e.reason) })
      const { key } = await mint(app, tiny)
      const huge = await costing(app, '/me/tenant', key, 4)
      expectJsonError(
        huge,
        429,
        'rate_limited',
        'This request costs 4 units, more than the 3 per minute this plan allows: it can never be admitted.',
      )
      expect(huge.headers['retry-after']).toBeUndefined()
      expect(events).toEqual(['cost_exceeds_limit'])
      expect(app.hits).toBe(0)
      expect((await get(app, '/me/tenant', key)).headers['ratelimit']).toBe('"minute";r=2;t=60, "hour";r=4;t=3600')
    })

    it.each([
      ['-1', 'cost: expected a whole number of units, 0 or more, got -1'],
      ['1.5', 'cost: expected a whole number of units, 0 or more, got 1.5'],
      ['NaN', 'cost: expected a whole number of units, 0 or more, got NaN'],
      ['Infinity', 'cost: expected a whole number of units, 0 or more, got Infinity'],
      ['text', 'cost: expected a whole number of units, 0 or more, got "text"'],
      ['throw', 'cost table bug'],
    ])('answers a cost of %s with a JSON 500 and an onError call, never a silent pass', async (sent, message) => {
      const errors: Error[] = []
      const events: string[] = []
      const app = start({ ...costOption(), onError: (e) => errors.push(e), onDecision: (e) => events.push(e.reason) })
      const { key } = await mint(app, tiny)
      expectJsonError(
        await costing(app, '/me/tenant', key, sent),
        500,
        'internal_error',
        'An unexpected error occurred.',
      )
      expect(errors.map((e) => e.message)).toEqual([message])
      expect(events).toEqual(['invalid_cost'])
      expect(app.hits).toBe(0)
      expect((await get(app, '/me/tenant', key)).headers['ratelimit']).toBe('"minute";r=2;t=60, "hour";r=4;t=3600')
    })
  })

  describe('rolling windows', () => {
    it('never lets twice the limit through at a boundary: the first requests count until their sub-window drops out', async () => {
      const app = start({ windows: 'rolling' })
      const { key } = await mint(app, tiny)
      for (const at of [0, 1_000, 2_000]) {
        clock.set(T0 + at)
        expect((await get(app, '/me/tenant', key)).status).toBe(200)
      }
      clock.set(T0 + 60_000)
      const refused = await get(app, '/me/tenant', key)
      expectJsonError(refused, 429, 'rate_limited', 'Rate limit exceeded: 3 requests per minute. Retry in 6 s.')
      expect(refused.headers['retry-after']).toBe('6')
      expect(refused.headers['ratelimit']).toBe('"minute";r=0;t=6, "hour";r=2;t=3900')
      clock.set(T0 + 65_999)
      expect((await get(app, '/me/tenant', key)).status).toBe(429)
      clock.set(T0 + 66_000)
      const admitted = await get(app, '/me/tenant', key)
      expect(admitted.status).toBe(200)
      expect(admitted.headers['ratelimit']).toBe('"minute";r=2;t=66, "hour";r=1;t=3894')
      expect(app.hits).toBe(4)
    })

    it('takes a cost from both rolling windows or nothing, and a free request still shows the counts', async () => {
      const app = start({ windows: 'rolling', cost: ({ request: req }) => Number(req.headers['x-cost'] ?? 1) })
      const { key } = await mint(app, tiny)
      expect((await get(app, '/me/tenant', key, { 'x-cost': '2' })).headers['ratelimit']).toBe(
        '"minute";r=1;t=66, "hour";r=3;t=3960',
      )
      const refused = await get(app, '/me/tenant', key, { 'x-cost': '2' })
      expect(refused.status).toBe(429)
      expect(refused.headers['retry-after']).toBe('66')
      const free = await get(app, '/me/tenant', key, { 'x-cost': '0' })
      expect(free.status).toBe(200)
      expect(free.headers['ratelimit']).toBe('"minute";r=1;t=66, "hour";r=3;t=3960')
    })
  })

  describe('client addresses', () => {
    it('lets no more concurrent lookups of unknown keys reach the store than the budget and its allowance allow', async () => {
      const app = start({ failedAuth: { perMinute: 5, lookupsOverBudgetPerMinute: 2 } })
      const findKey = vi.spyOn(store, 'findKey')
      const replies = await Promise.all(Array.from({ length: 100 }, () => from(app, mintApiKey().key)))
      expect(findKey.mock.calls.length).toBe(5 + 2)
      expect(replies.filter((res) => res.status === 401)).toHaveLength(5)
      expect(replies.filter((res) => res.status === 429)).toHaveLength(95)
    })

    it('groups IPv6 clients by /64, so rotating addresses gives no fresh budget', async () => {
      const app = start({ failedAuth: { perMinute: 3 } })
      for (let i = 0; i < 3; i++) expect((await from(app, mintApiKey().key, `2001:db8:1:2::${i + 1}`)).status).toBe(401)
      expect((await from(app, mintApiKey().key, '2001:db8:1:2:ffff:ffff:ffff:ffff')).status).toBe(429)
      expect((await from(app, mintApiKey().key, '2001:db8:1:3::1')).status).toBe(401)
    })
  })

  describe('shared addresses and store faults', () => {
    const garbage = () => [
      `${mintApiKey().key.slice(0, -1)}0`,
      mintApiKey().key,
      'eyJhbGciOiJIUzI1NiJ9.e30.x',
      'garbage',
    ]

    it('never counts a store outage as failed authentication: no 429 during it, and both keys work on the first request after it', async () => {
      const app = start({ failedAuth: { perMinute: 3 }, cache: { ttlMs: 1_000 } })
      const cached = await mint(app, acme)
      const fresh = await mint(app, globex)
      expect((await get(app, '/me/tenant', cached.key)).status).toBe(200)
      const findKey = vi.spyOn(store, 'findKey').mockRejectedValue(new Error('ECONNREFUSED'))
      const findTenant = vi.spyOn(store, 'findTenant').mockRejectedValue(new Error('ECONNREFUSED'))
      clock.advance(2_000)
      const during: number[] = []
      for (let i = 0; i < 20; i++) {
        during.push((await get(app, '/me/tenant', fresh.key)).status, (await get(app, '/me/tenant', cached.key)).status)
        clock.advance(500)
      }
      expect(new Set(during)).toEqual(new Set([503]))
      findKey.mockRestore()
      findTenant.mockRestore()
      expect((await get(app, '/me/tenant', fresh.key)).status).toBe(200)
      expect((await get(app, '/me/tenant', cached.key)).status).toBe(200)
    })

    it('keeps a key in steady use at 200 while its address sends garbage for longer than the cache TTL, and the garbage reaches the store only within the budget', async () => {
      const app = start({ failedAuth: { perMinute: 5, lookupsOverBudgetPerMinute: 2 }, cache: { ttlMs: 1_000 } })
      const { key } = await mint(app, globex)
      const findKey = vi.spyOn(store, 'findKey')
      const statuses: number[] = []
      const refused: number[] = []
      // 20 s of traffic, twenty times the cache TTL: the key every 250 ms, four kinds of garbage between.
      for (let step = 0; step < 80; step++) {
        statuses.push((await get(app, '/me/tenant', key)).status)
        for (const bad of garbage()) refused.push((await get(app, '/me/tenant', bad)).status)
        clock.advance(250)
      }
      expect(statuses.filter((status) => status === 200).length / statuses.length).toBeGreaterThanOrEqual(0.99)
      expect(new Set(statuses)).toEqual(new Set([200]))
      expect(new Set(refused)).toEqual(new Set([401, 429]))
      const garbageLookups = findKey.mock.calls.filter(([keyId]) => keyId !== key.slice(8, 20)).length
      // Within the minute: the budget, then the allowance over budget.
      expect(garbageLookups).toBeLessThanOrEqual(5 + 2)
      // The valid key's own lookups: refreshed ahead of expiry, about one per half TTL.
      expect(findKey.mock.calls.length - garbageLookups).toBeLessThanOrEqual(2 + (80 * 250) / 500)
    })

    it('lets a key verified here recently reach the store past its address’s spent budget and allowance, though its cache entry expired', async () => {
      const app = start({ failedAuth: { perMinute: 3, lookupsOverBudgetPerMinute: 1 }, cache: { ttlMs: 1_000 } })
      const { key } = await mint(app, acme)
      expect((await get(app, '/me/tenant', key)).status).toBe(200)
      for (let i = 0; i < 3; i++) expect((await get(app, '/me/tenant', mintApiKey().key)).status).toBe(401)
      // Over budget: the allowance lets one more lookup through, which fails.
      expect((await get(app, '/me/tenant', mintApiKey().key)).status).toBe(429)
      const findKey = vi.spyOn(store, 'findKey')
      expect((await get(app, '/me/tenant', mintApiKey().key)).status).toBe(429)
      expect(findKey).not.toHaveBeenCalled()
      clock.advance(5_000)
      expect((await get(app, '/me/tenant', key)).status).toBe(200)
      // A key this process never admitted waits for the allowance, spent by the garbage.
      expectJsonError(await get(app, '/me/tenant', (await mint(app, globex)).key), 429, 'rate_limited')
    })

    it('admits forty concurrent first requests of one fresh key with one lookup, whatever the failure budget', async () => {
      const app = start({ failedAuth: { perMinute: 5 } })
      const { key } = await mint(app, globex)
      const findKey = store.findKey.bind(store)
      const spy = vi
        .spyOn(store, 'findKey')
        .mockImplementation((keyId) => new Promise((resolve) => setTimeout(() => resolve(findKey(keyId)), 50)))
      const replies = await Promise.all(Array.from({ length: 40 }, () => get(app, '/me/tenant', key)))
      expect(replies.map((res) => res.status)).toEqual(Array(40).fill(200))
      expect(spy).toHaveBeenCalledTimes(1)
      // What the lookup spent in advance came back: the whole budget is left for real failures.
      for (let i = 0; i < 5; i++) expect((await get(app, '/me/tenant', mintApiKey().key)).status).toBe(401)
      expect((await get(app, '/me/tenant', mintApiKey().key)).status).toBe(429)
    })

    it('never answers 401 or 429 when the limiter fails, and counts nothing against the address', async () => {
      const app = start({
        failedAuth: { perMinute: 2 },
        limiter: { backend: { consume: () => Promise.reject(new Error('ECONNREFUSED')) } },
      })
      const { key } = await mint(app, acme)
      for (let i = 0; i < 6; i++) expectJsonError(await get(app, '/me/tenant', key), 503, 'service_unavailable')
      for (let i = 0; i < 2; i++) expect((await get(app, '/me/tenant', mintApiKey().key)).status).toBe(401)
      expect((await get(app, '/me/tenant', mintApiKey().key)).status).toBe(429)
    })
  })

  describe('the failed-authentication budget: only failures charge it, lookups in flight are capped', () => {
    /** The key with its last checksum character changed: the checksum fails. */
    const badChecksum = (key: string) => `${key.slice(0, -1)}${key.endsWith('0') ? '1' : '0'}`
    /** Store calls of findKey, each answered after `delayMs` of real time, with the most in flight at once. */
    function slowStore(delayMs: number) {
      const findKey = store.findKey.bind(store)
      const counts = { calls: 0, inFlight: 0, maxInFlight: 0 }
      vi.spyOn(store, 'findKey').mockImplementation((keyId) => {
        counts.calls++
        counts.maxInFlight = Math.max(counts.maxInFlight, ++counts.inFlight)
        return new Promise((resolve) =>
          setTimeout(() => {
            counts.inFlight--
            resolve(findKey(keyId))
          }, delayMs),
        )
      })
      return counts
    }

    it('admits 100 distinct valid keys not yet cached, sent at once from one address: no too_many_failures, lookups capped in flight', async () => {
      const app = start({ tiers: { team: { perMinute: 1_000, perHour: 10_000 } }, keyStoreTimeoutMs: 10_000 })
      const keys = await Promise.all(Array.from({ length: 100 }, (_, i) => mint(app, globex, [], `agent-${i}`)))
      const counts = slowStore(10)
      const replies = await Promise.all(keys.map(({ key }) => from(app, key)))
      expect(replies.filter((res) => res.status === 200)).toHaveLength(100)
      expect(counts.calls).toBe(100)
      expect(counts.maxInFlight).toBeLessThanOrEqual(8)
      // Nothing was charged: the whole budget is left for real failures.
      for (let i = 0; i < 30; i++) expect((await from(app, mintApiKey().key)).status).toBe(401)
      expect((await from(app, badChecksum(mintApiKey().key))).status).toBe(429)
    })

    it('answers 503 with Retry-After, never 429, past the lookups in flight and their queue', async () => {
      const app = start({ tiers: { team: { perMinute: 1_000, perHour: 10_000 } }, keyStoreTimeoutMs: 10_000 })
      const keys = await Promise.all(Array.from({ length: 200 }, (_, i) => mint(app, globex, [], `agent-${i}`)))
      const counts = slowStore(20)
      const replies = await Promise.all(keys.map(({ key }) => from(app, key)))
      const statuses = replies.map((res) => res.status)
      // 8 in flight and 128 queued are admitted; the rest are told to come back, as a store that is busy.
      expect(statuses.filter((status) => status === 200)).toHaveLength(8 + 128)
      const refused = replies.filter((res) => res.status !== 200)
      expect(refused).toHaveLength(200 - 8 - 128)
      for (const res of refused) {
        expectJsonError(res, 503, 'service_unavailable')
        expect(res.headers['retry-after']).toBe('10')
      }
      expect(counts.maxInFlight).toBeLessThanOrEqual(8)
    })

    it('keeps a store slower than keyStoreTimeoutMs from switching the budget off: store calls of one address stay capped in flight and bounded per minute', async () => {
      const app = start({ keyStoreTimeoutMs: 50 })
      const counts = slowStore(200)
      const statuses: number[] = []
      // Three hundred unknown keys from one address, ten at a time, within one minute of the budget's clock.
      for (let round = 0; round < 30; round++) {
        const replies = await Promise.all(Array.from({ length: 10 }, () => from(app, mintApiKey().key)))
        statuses.push(...replies.map((res) => res.status))
      }
      // Every store call that outlived its request settles, then counts as the failure it was.
      await vi.waitFor(() => expect(counts.inFlight).toBe(0), { timeout: 10_000, interval: 50 })
      expect(counts.maxInFlight).toBeLessThanOrEqual(8)
      // The budget (30 failed lookups a minute), then the allowance over budget (5).
      expect(counts.calls).toBeLessThanOrEqual(30 + 5)
      expect(new Set(statuses)).toEqual(new Set([503, 429]))
      expect(statuses.slice(-10)).toEqual(Array(10).fill(429))
    })

    it('caps the calls in flight of a verifier of the user’s, and of API keys behind a JWT verifier, until they settle', async () => {
      const counts = { calls: 0, inFlight: 0, maxInFlight: 0 }
      const slowVerify = (): Promise<{ ok: false; reason: 'unknown_key' }> => {
        counts.calls++
        counts.maxInFlight = Math.max(counts.maxInFlight, ++counts.inFlight)
        return new Promise((resolve) =>
          setTimeout(() => {
            counts.inFlight--
            resolve({ ok: false, reason: 'unknown_key' })
          }, 200),
        )
      }
      const own = start({ keyStoreTimeoutMs: 50, verifier: { verify: slowVerify } })
      const behindJwt = start({
        keyStoreTimeoutMs: 50,
        jwt: { verify: () => ({ ok: false, reason: 'invalid_jwt' }) },
      })
      const storeCounts = slowStore(200)
      for (const app of [own, behindJwt]) {
        for (let round = 0; round < 10; round++)
          await Promise.all(Array.from({ length: 10 }, () => from(app, mintApiKey().key)))
      }
      await vi.waitFor(() => expect(counts.inFlight + storeCounts.inFlight).toBe(0), { timeout: 10_000, interval: 50 })
      expect(counts.maxInFlight).toBeLessThanOrEqual(8)
      expect(storeCounts.maxInFlight).toBeLessThanOrEqual(8)
      expect(counts.calls).toBeLessThanOrEqual(30 + 5)
      expect(storeCounts.calls).toBeLessThanOrEqual(30 + 5)
    })

    it('lets an address over budget from garbage whose checksum fails still verify a valid key it never failed with', async () => {
      const app = start({ failedAuth: { perMinute: 3, lookupsOverBudgetPerMinute: 0 } })
      const findKey = vi.spyOn(store, 'findKey')
      for (let i = 0; i < 50; i++) await from(app, badChecksum(mintApiKey().key))
      expect((await from(app, 'garbage')).status).toBe(429)
      // Garbage the checksum turns away costs the store nothing and never closes it.
      expect(findKey).not.toHaveBeenCalled()
      const { key } = await mint(app, acme)
      expect((await from(app, key)).status).toBe(200)
      expect(findKey).toHaveBeenCalledTimes(1)
    })

    it('over budget, lets a valid key the address never failed with through the per-address allowance', async () => {
      const app = start({ failedAuth: { perMinute: 3, lookupsOverBudgetPerMinute: 2 } })
      for (let i = 0; i < 3; i++) expect((await from(app, mintApiKey().key)).status).toBe(401)
      expect((await from(app, mintApiKey().key)).status).toBe(429)
      const { key } = await mint(app, acme)
      // One allowance point left: the valid key takes it, verifies, and gives it back.
      expect((await from(app, key)).status).toBe(200)
      expect((await from(app, (await mint(app, globex)).key)).status).toBe(200)
      expect((await from(app, mintApiKey().key)).status).toBe(429)
      const findKey = vi.spyOn(store, 'findKey')
      expect((await from(app, mintApiKey().key)).status).toBe(429)
      expect(findKey).not.toHaveBeenCalled()
    })

    it('trusts a key only once a whole decision admits it: a 402 key gets no way past its address’s budget', async () => {
      const app = start({ failedAuth: { perMinute: 3, lookupsOverBudgetPerMinute: 0 }, cache: { ttlMs: 1_000 } })
      const { key } = await mint(app, unpaid)
      expect((await from(app, key)).status).toBe(402)
      for (let i = 0; i < 3; i++) expect((await from(app, mintApiKey().key)).status).toBe(401)
      clock.advance(5_000)
      const findKey = vi.spyOn(store, 'findKey')
      expectJsonError(await from(app, key), 429, 'rate_limited')
      expect(findKey).not.toHaveBeenCalled()
    })

    it('takes the trust of a key revoked through the key manager: its key ID no longer reaches the store past the budget', async () => {
      const app = start({ failedAuth: { perMinute: 3, lookupsOverBudgetPerMinute: 0 }, cache: { ttlMs: 1_000 } })
      const { key, keyId } = await mint(app, acme)
      expect((await from(app, key)).status).toBe(200)
      expect(await app.authenticator.keys.revoke(acme.tenantId, keyId)).toBe(true)
      for (let i = 0; i < 3; i++) expect((await from(app, mintApiKey().key)).status).toBe(401)
      clock.advance(5_000)
      const findKey = vi.spyOn(store, 'findKey')
      for (const presented of [key, `${key.slice(0, 20)}${mintApiKey().key.slice(20, -6)}${key.slice(-6)}`])
        expectJsonError(await from(app, presented), 429, 'rate_limited')
      expect(findKey).not.toHaveBeenCalled()
    })

    it('takes the trust of a key the store says is revoked, as a cache reload learns it', async () => {
      const app = start({ failedAuth: { perMinute: 3, lookupsOverBudgetPerMinute: 0 }, cache: { ttlMs: 1_000 } })
      const { key, keyId } = await mint(app, acme)
      expect((await from(app, key)).status).toBe(200)
      // Revoked in the store by another process, without a change feed: this one learns it on its next reload.
      await store.revokeKey(keyId, new Date(T0))
      clock.advance(2_000)
      expect((await from(app, key)).status).toBe(401)
      for (let i = 0; i < 3; i++) await from(app, mintApiKey().key)
      clock.advance(5_000)
      const findKey = vi.spyOn(store, 'findKey')
      expectJsonError(await from(app, key), 429, 'rate_limited')
      expect(findKey).not.toHaveBeenCalled()
    })
  })

  describe('signed tokens', () => {
    let signer: TestSigner
    beforeAll(async () => {
      signer = await createTestSigner(acme.tenantId, T0)
    })
    const jwtOptions = () => signer.jwtOptions
    const token = (claims: Record<string, unknown>, expiresAtMs: number) => signer.token(claims, expiresAtMs)

    it('answers an expired or unsigned JWT like a bad key, naming the token', async () => {
      const app = start(jwtOptions())
      const expired = await get(app, '/me/tenant', await token({}, T0 - 60_000))
      expectJsonError(expired, 401, 'unauthorized', 'Access token invalid, expired or revoked.')
      expect(expired.headers['www-authenticate']).toBe(INVALID_TOKEN_CHALLENGE)
      const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
      const unsigned = `${encode({ alg: 'none' })}.${encode({ tenant_id: acme.tenantId, iss: 'https://id.test', aud: 'saiku', exp: T0 / 1000 + 300 })}.`
      expectJsonError(await get(app, '/me/tenant', unsigned), 401, 'unauthorized')
    })
  })

  describe('exchanged tokens', () => {
    let tokens: ReturnType<typeof createTokenIssuer>
    beforeAll(async () => {
      const pair = await generateKeyPair('ES256', { extractable: true })
      tokens = createTokenIssuer({
        privateKey: { ...(await exportJWK(pair.privateKey)), kid: 'server-1' },
        issuer: 'https://api.test',
        audience: 'https://api.test',
      })
    })
    const withTokens = (options: SaikuOptions = {}): SaikuOptions => ({
      ...options,
      jwt: {
        key: tokens.jwks().keys[0]!,
        issuer: 'https://api.test',
        audience: 'https://api.test',
        algorithms: ['ES256'],
      },
    })
    async function exchange(app: CoreApp, key: string): Promise<string> {
      const decision = await app.authenticator.authenticate({
        headers: { authorization: `Bearer ${key}` },
        method: 'POST',
        url: '/me/tokens',
        ip: '127.0.0.1',
      })
      if (!decision.ok || decision.principal === null) throw new Error('exchange refused')
      return (await tokens.issue(decision.principal.credential)).accessToken
    }

    it('refuses a token at once when the key it was exchanged from is revoked', async () => {
      const app = start(withTokens())
      const created = await mint(app, acme, ['keys:read'])
      const token = await exchange(app, created.key)
      expect((await get(app, '/me/tenant', token)).status).toBe(200)
      expect(await app.authenticator.keys.revoke(acme.tenantId, created.keyId)).toBe(true)
      expectJsonError(await get(app, '/me/tenant', token), 401, 'unauthorized')
      expectJsonError(await get(app, '/me/tenant', created.key), 401, 'unauthorized')
    })

    it('refuses a token once the key it was exchanged from expires, and never issues one that outlives it', async () => {
      const app = start(withTokens())
      const created = await app.authenticator.keys.create(acme.tenantId, {
        label: 'short',
        expiresAt: new Date(T0 + 120_000),
      })
      const token = await exchange(app, created.key)
      const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as {
        exp: number
        key_id: string
        environment: string
      }
      expect(claims).toMatchObject({ key_id: created.keyId, environment: 'live' })
      expect(claims.exp).toBeLessThanOrEqual((T0 + 120_000) / 1000)
      expect((await get(app, '/me/tenant', token)).status).toBe(200)
      clock.set(T0 + 120_000)
      expectJsonError(await get(app, '/me/tenant', token), 401, 'unauthorized')
    })

    it('refuses a token exchanged from a test key where only live keys are accepted', async () => {
      const both = start(withTokens())
      const testKey = await both.authenticator.keys.create(acme.tenantId, { label: 'ci', environment: 'test' })
      const token = await exchange(both, testKey.key)
      expect((await get(both, '/me/tenant', token)).status).toBe(200)
      const liveOnly = start(withTokens({ environments: ['live'] }))
      expectJsonError(await get(liveOnly, '/me/tenant', testKey.key), 401, 'unauthorized')
      expectJsonError(await get(liveOnly, '/me/tenant', token), 401, 'unauthorized')
    })

    it('keeps API keys clear of their address’s garbage when signed tokens are accepted too', async () => {
      const app = start(withTokens({ failedAuth: { perMinute: 3 }, cache: { ttlMs: 1_000 } }))
      const { key } = await mint(app, globex)
      const findKey = store.findKey.bind(store)
      vi.spyOn(store, 'findKey').mockImplementation(
        (keyId) => new Promise((resolve) => setTimeout(() => resolve(findKey(keyId)), 50)),
      )
      expect(
        (await Promise.all(Array.from({ length: 20 }, () => get(app, '/me/tenant', key)))).map((res) => res.status),
      ).toEqual(Array(20).fill(200))
      for (let i = 0; i < 4; i++) await get(app, '/me/tenant', mintApiKey().key)
      clock.advance(5_000)
      expect((await get(app, '/me/tenant', key)).status).toBe(200)
    })

    it('answers 503, never 401, when the source key cannot be looked up', async () => {
      const app = start(withTokens({ cache: { ttlMs: 1_000 } }))
      const token = await exchange(app, (await mint(app, acme)).key)
      clock.advance(2_000)
      vi.spyOn(store, 'findKey').mockRejectedValue(new Error('ECONNREFUSED'))
      expectJsonError(await get(app, '/me/tenant', token), 503, 'service_unavailable')
    })
  })

  describe('failure policies', () => {
    const failingLimiter: LimiterBackend = { consume: () => Promise.reject(new Error('ECONNREFUSED 127.0.0.1:6379')) }

    it('answers 503 within the timeout when the key store hangs', async () => {
      const errors: Error[] = []
      const app = start({ keyStoreTimeoutMs: 50, onError: (e) => errors.push(e) })
      const { key } = await mint(app, acme)
      vi.spyOn(store, 'findKey').mockReturnValue(new Promise(() => {}))
      expectJsonError(await get(app, '/me/tenant', key), 503, 'service_unavailable')
      expect(errors).toMatchObject([{ name: 'SaikuStoreError', source: 'key_store', timedOut: true }])
    })

    it('answers 503 within the timeout when a custom limiter backend hangs', async () => {
      const errors: Error[] = []
      const app = start({
        limiter: { backend: { consume: () => new Promise(() => {}) }, timeoutMs: 50 },
        onError: (e) => errors.push(e),
      })
      expectJsonError(await get(app, '/me/tenant', (await mint(app, acme)).key), 503, 'service_unavailable')
      expect(errors).toMatchObject([{ name: 'SaikuStoreError', source: 'limiter', timedOut: true }])
    })

    it('admits valid keys even when recording their last use fails', async () => {
      const app = start()
      const { key } = await mint(app, acme)
      vi.spyOn(store, 'recordKeyUse').mockImplementation(() => {
        throw new Error('read-only replica')
      })
      expect((await get(app, '/me/tenant', key)).status).toBe(200)
    })

    it('serves a stale record when the key store fails and the policy allows it', async () => {
      const errors: Error[] = []
      const app = start({
        cache: { ttlMs: 1_000 },
        failurePolicy: { keyStore: 'serve-stale' },
        onError: (e) => errors.push(e),
      })
      const { key } = await mint(app, acme)
      expect((await get(app, '/me/tenant', key)).status).toBe(200)
      clock.set(T0 + 5_000)
      vi.spyOn(store, 'findKey').mockRejectedValue(new Error('down'))
      vi.spyOn(store, 'findTenant').mockRejectedValue(new Error('down'))
      expect((await get(app, '/me/tenant', key)).status).toBe(200)
      expect(errors.length).toBeGreaterThan(0)
      // A key never seen before cannot be served from a cache.
      expectJsonError(await get(app, '/me/tenant', mintApiKey().key), 503, 'service_unavailable')
    })

    it('serves a stale key and tenant no longer than cache.maxStaleMs past their expiry, then answers 503', async () => {
      const app = start({
        cache: { ttlMs: 1_000, maxStaleMs: 5_000 },
        failurePolicy: { keyStore: 'serve-stale' },
        onError: () => {},
      })
      const { key } = await mint(app, acme)
      expect((await get(app, '/me/tenant', key)).status).toBe(200)
      vi.spyOn(store, 'findKey').mockRejectedValue(new Error('down'))
      vi.spyOn(store, 'findTenant').mockRejectedValue(new Error('down'))
      clock.set(T0 + 1_000 + 4_999)
      expect((await get(app, '/me/tenant', key)).status).toBe(200)
      clock.set(T0 + 1_000 + 5_000)
      expectJsonError(await get(app, '/me/tenant', key), 503, 'service_unavailable')
    })

    it('answers 503 when the limiter fails and the policy is closed, never 429', async () => {
      const errors: Error[] = []
      const app = start({ limiter: { backend: failingLimiter }, onError: (e) => errors.push(e) })
      const res = await get(app, '/me/tenant', (await mint(app, acme)).key)
      expectJsonError(res, 503, 'service_unavailable')
      expect(errors[0]?.name).toBe('SaikuStoreError')
      expect(app.hits).toBe(0)
    })

    it('admits without rate-limit fields when the limiter fails and the policy is open', async () => {
      const app = start({ limiter: { backend: failingLimiter }, failurePolicy: { limiter: 'open' } })
      const res = await get(app, '/me/tenant', (await mint(app, acme)).key)
      expect(res.status).toBe(200)
      expect(res.headers['ratelimit']).toBeUndefined()
      expect(res.headers['retry-after']).toBeUndefined()
    })

    it('answers 503 within the timeout when a factory-built limiter hangs', async () => {
      const errors: Error[] = []
      const hanging = () => ({
        consume: () => new Promise(() => {}),
        reward: () => new Promise(() => {}),
        get: () => new Promise(() => {}),
      })
      const app = start({ limiter: { factory: hanging as never, timeoutMs: 50 }, onError: (e) => errors.push(e) })
      expectJsonError(await get(app, '/me/tenant', (await mint(app, acme)).key), 503, 'service_unavailable')
      expect(errors).toMatchObject([{ name: 'SaikuStoreError', source: 'limiter', timedOut: true }])
    })
  })
})

describe('nothing secret leaves the core in these decisions', () => {
  it('no decision header or body, nor any hook payload, holds a key or its secret part', () => {
    expect(secrets.size).toBeGreaterThan(50)
    const everything = told.join('\n')
    for (const secret of secrets) {
      expect(everything).not.toContain(secret)
      expect(everything).not.toContain(secret.slice(21, 53))
    }
    expect(everything).not.toMatch(/Bearer sk_/i)
  })
})
