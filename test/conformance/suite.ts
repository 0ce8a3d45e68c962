import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type RequestListener } from 'node:http'
import type { AddressInfo } from 'node:net'
import request from 'supertest'
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose'
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  createMemoryLimiter,
  createRateLimiterBackend,
  createTokenIssuer,
  DEFAULT_TIERS,
  MemoryKeyStore,
  mintApiKey,
  type CreatedApiKey,
  type DecisionEvent,
  type LimiterBackend,
  type SaikuOptions,
  type TenantRecord,
} from '@saiku/core'
import { installFakeClock, type FakeClock } from '@saiku/core/testing'
import { createRedisLimiter } from '@saiku/redis'
import { Redis } from 'ioredis'
import { redisUrl } from '@saiku/test-support/services'
import type { AdapterHarness, AppFixtures, AppSettings, ConformanceApp, Project } from './harness.js'

const T0 = Date.parse('2030-01-01T00:00:00.000Z')
const SPEC_402 = 'This feature requires an active subscription or trial. Visit /billing to start your 14-day trial.'
const UNAUTHORIZED_BODY = { error: 'unauthorized', message: 'API key missing or invalid.' }
const BARE_CHALLENGE = 'Bearer realm="saiku"'
const INVALID_TOKEN_CHALLENGE =
  'Bearer realm="saiku", error="invalid_token", error_description="The API key is malformed, unknown, expired or revoked"'
const STARTER_POLICY = '"minute";q=60;w=60, "hour";q=1000;w=3600'

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

const projects = new Map<string, Project>([
  ['p-acme', { id: 'p-acme', tenantId: acme.tenantId, name: 'Acme pipeline' }],
  ['p-globex', { id: 'p-globex', tenantId: globex.tenantId, name: 'Globex pipeline' }],
])

function expectJsonError(res: request.Response, status: number, error: string, message?: string): void {
  expect(res.status).toBe(status)
  expect(res.headers['content-type']).toBe('application/json; charset=utf-8')
  expect(Object.keys(res.body).sort()).toEqual(['error', 'message'])
  expect(res.body.error).toBe(error)
  expect(typeof res.body.message).toBe('string')
  if (message !== undefined) expect(res.body.message).toBe(message)
}

/** A GET with raw header lines, for what supertest cannot send (a repeated Authorization header). */
async function rawGet(handler: RequestListener, path: string, rawHeaders: string[]): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  const server = createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  try {
    const { port } = server.address() as AddressInfo
    const req = httpRequest({ host: '127.0.0.1', port, path, method: 'GET', headers: ['Host', `127.0.0.1:${port}`, ...rawHeaders] })
    req.end()
    const [res] = (await once(req, 'response')) as [IncomingMessage]
    let body = ''
    for await (const chunk of res) body += chunk
    return { status: res.statusCode!, headers: res.headers, body }
  } finally {
    server.close()
  }
}

export function describeAdapterConformance(harness: AdapterHarness): void {
  describe(`adapter conformance: ${harness.name}`, () => {
    let store: MemoryKeyStore
    let fixtures: AppFixtures
    let apps: ConformanceApp[]

    let clock: FakeClock

    beforeEach(() => {
      clock = installFakeClock(T0)
      store = new MemoryKeyStore({
        tenants: [acme, globex, unpaid, lapsed, trial, enterprise],
        tiers: { ...DEFAULT_TIERS, tiny: { perMinute: 3, perHour: 5 }, pair: { perMinute: 3, perHour: 6 } },
      })
      store.putTenant(tiny)
      store.putTenant(pair)
      fixtures = { projects, hits: { tenant: 0 }, errors: [] }
      apps = []
    })
    afterEach(() => {
      for (const app of apps) app.authenticator.close()
      clock.restore()
    })

    function start(options: SaikuOptions = {}, settings: AppSettings = {}): ConformanceApp {
      const app = harness.createApp(store, { ...options, tiers: { tiny: { perMinute: 3, perHour: 5 }, ...options.tiers } }, fixtures, settings)
      apps.push(app)
      return app
    }

    async function mint(app: ConformanceApp, owner: TenantRecord, permissions: string[] = [], label = 'production-agent'): Promise<CreatedApiKey> {
      return app.authenticator.keys.create(owner.tenantId, { label, permissions })
    }

    const get = (app: ConformanceApp, path: string, key?: string) => {
      const req = request(app.handler).get(path)
      return key === undefined ? req : req.set('Authorization', `Bearer ${key}`)
    }

    describe('credentials', () => {
      it('answers a request without a key with 401 and a bare challenge, without a store lookup', async () => {
        const app = start()
        const findKey = vi.spyOn(store, 'findKey')
        const res = await get(app, '/me/tenant')
        expectJsonError(res, 401, 'unauthorized', UNAUTHORIZED_BODY.message)
        expect(res.headers['www-authenticate']).toBe(BARE_CHALLENGE)
        expect(res.headers['cache-control']).toBe('no-store')
        expect(findKey).not.toHaveBeenCalled()
      })

      it.each(['Basic dXNlcjpwYXNz', 'Token abc', 'Bearerabc'])('treats scheme %j as no credentials', async (header) => {
        const app = start()
        const findKey = vi.spyOn(store, 'findKey')
        const res = await request(app.handler).get('/me/tenant').set('Authorization', header)
        expectJsonError(res, 401, 'unauthorized')
        expect(res.headers['www-authenticate']).toBe(BARE_CHALLENGE)
        expect(findKey).not.toHaveBeenCalled()
      })

      it.each(['bearer', 'BEARER', 'BeArEr'])('accepts the scheme spelled %s', async (scheme) => {
        const app = start()
        const key = await mint(app, acme)
        const res = await request(app.handler).get('/me/tenant').set('Authorization', `${scheme} ${key.key}`)
        expect(res.status).toBe(200)
      })

      it('accepts several spaces after the scheme', async () => {
        const app = start()
        const key = await mint(app, acme)
        const res = await request(app.handler).get('/me/tenant').set('Authorization', `Bearer   ${key.key}`)
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
        const res = await request(app.handler).get('/me/tenant').set('Authorization', header)
        expectJsonError(res, 401, 'unauthorized', UNAUTHORIZED_BODY.message)
        expect(res.headers['www-authenticate']).toBe(INVALID_TOKEN_CHALLENGE)
        expect(findKey).not.toHaveBeenCalled()
      })

      it('refuses a key with a bad checksum or a non-ASCII character before any store lookup', async () => {
        const app = start()
        const { key } = await mint(app, acme)
        const findKey = vi.spyOn(store, 'findKey')
        const last = key.at(-1) === 'a' ? 'b' : 'a'
        for (const bad of [key.slice(0, -1) + last, key.slice(0, 30) + 'é' + key.slice(31), key.replace('sk_live_', 'sk_prod_')]) {
          const res = await get(app, '/me/tenant', bad)
          expectJsonError(res, 401, 'unauthorized', UNAUTHORIZED_BODY.message)
          expect(res.headers['www-authenticate']).toBe(INVALID_TOKEN_CHALLENGE)
        }
        expect(findKey).not.toHaveBeenCalled()
      })

      it('answers unknown, revoked and expired keys with the same 401', async () => {
        const app = start()
        const revoked = await mint(app, acme)
        await app.authenticator.keys.revoke(acme.tenantId, revoked.keyId)
        const expiring = await app.authenticator.keys.create(acme.tenantId, { label: 'short', expiresAt: new Date(T0 + 60_000) })
        expect((await get(app, '/me/tenant', expiring.key)).status).toBe(200)
        clock.set(T0 + 60_000)

        const bodies = []
        for (const key of [mintApiKey().key, revoked.key, expiring.key]) {
          const res = await get(app, '/me/tenant', key)
          expectJsonError(res, 401, 'unauthorized')
          expect(res.headers['www-authenticate']).toBe(INVALID_TOKEN_CHALLENGE)
          bodies.push(res.text)
        }
        expect(new Set(bodies).size).toBe(1)
        expect(JSON.parse(bodies[0]!)).toEqual(UNAUTHORIZED_BODY)
      })

      it('refuses a key one millisecond after it expires, not before', async () => {
        const app = start({ cache: { ttlMs: 60_000 } })
        const key = await app.authenticator.keys.create(acme.tenantId, { label: 'exact', expiresAt: new Date(T0 + 5_000) })
        clock.set(T0 + 4_999)
        expect((await get(app, '/me/tenant', key.key)).status).toBe(200)
        clock.set(T0 + 5_000)
        expect((await get(app, '/me/tenant', key.key)).status).toBe(401)
      })

      it('answers two Authorization headers with 400 invalid_request, never with the first key', async () => {
        const app = start()
        const { key } = await mint(app, acme)
        // Two header lines, exactly as sent: Node would keep only the first in req.headers.
        const res = await rawGet(app.handler, '/me/tenant', ['Authorization', `Bearer ${key}`, 'Authorization', `Bearer ${mintApiKey().key}`])
        expect(res.status).toBe(400)
        expect(JSON.parse(res.body)).toEqual({
          error: 'invalid_request',
          message: 'Send exactly one API key, in one Authorization header: "Authorization: Bearer <key>".',
        })
        expect(res.headers['www-authenticate']).toMatch(/^Bearer realm="saiku", error="invalid_request"/)
        expect(fixtures.hits.tenant).toBe(0)
      })

      it.each([
        ['two tokens', (key: string) => `Bearer ${key} ${key}`],
        ['a list of credentials', (key: string) => `Bearer ${key},Bearer ${key}`],
      ])('answers %s in one header with 400', async (_name, header) => {
        const app = start()
        const { key } = await mint(app, acme)
        const res = await request(app.handler).get('/me/tenant').set('Authorization', header(key))
        expectJsonError(res, 400, 'invalid_request')
      })

      it('never reads a key from the query string', async () => {
        const app = start()
        const { key } = await mint(app, acme)
        const onlyQuery = await request(app.handler).get(`/me/tenant?access_token=${key}`)
        expectJsonError(onlyQuery, 401, 'unauthorized')
        expect(onlyQuery.headers['www-authenticate']).toBe(BARE_CHALLENGE)
        const both = await get(app, `/me/tenant?access_token=${key}`, key)
        expectJsonError(both, 400, 'invalid_request')
      })

      it('refuses test keys where only live keys are accepted', async () => {
        const app = start({ environments: ['live'] })
        const testKey = await app.authenticator.keys.create(acme.tenantId, { label: 'ci', environment: 'test' })
        expect((await get(app, '/me/tenant', testKey.key)).status).toBe(401)
        const liveKey = await mint(app, acme)
        expect((await get(app, '/me/tenant', liveKey.key)).status).toBe(200)
      })
    })

    describe('the tenant', () => {
      it('answers GET /me/tenant with exactly the spec fields', async () => {
        const app = start()
        const { key } = await mint(app, acme)
        const res = await get(app, '/me/tenant', key)
        expect(res.status).toBe(200)
        expect(res.body).toEqual({
          tenantId: acme.tenantId,
          tenantSlug: 'acme',
          tier: 'starter',
          connectionName: 'acme-warehouse',
        })
      })

      it('answers 402 with the spec body to a tenant without a subscription, except on exempt routes', async () => {
        const app = start({ subscription: { exemptPaths: ['/me/billing'] } })
        const { key } = await mint(app, unpaid)
        const res = await get(app, '/me/tenant', key)
        expectJsonError(res, 402, 'payment_required', SPEC_402)
        expect(fixtures.hits.tenant).toBe(0)
        const billing = await get(app, '/me/billing', key)
        expect(billing.status).toBe(200)
        expect(billing.body).toEqual({ status: 'none' })
        expect(billing.headers['ratelimit']).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
        expect((await get(app, '/me/billingx', key)).status).toBe(402)
      })

      it('matches exempt paths the way the framework routes them: in any case, from an absolute-form target', async () => {
        const app = start({ subscription: { exemptPaths: ['/me/billing'] } })
        const { key } = await mint(app, unpaid)
        for (const path of ['/ME/billing', '/me/Billing', '/me/billing/', '/me/billing?from=test']) {
          const res = await get(app, path, key)
          expect(res.status, path).toBe(200)
          expect(res.body).toEqual({ status: 'none' })
        }
        const absolute = await rawGet(app.handler, 'http://api.example.test/me/billing', ['Authorization', `Bearer ${key}`])
        expect(absolute.status).toBe(200)
        expect(JSON.parse(absolute.body)).toEqual({ status: 'none' })
        const absoluteTenant = await rawGet(app.handler, 'http://api.example.test/me/tenant', ['Authorization', `Bearer ${key}`])
        expect(absoluteTenant.status).toBe(402)
        expectJsonError(await get(app, '/ME/TENANT', key), 402, 'payment_required', SPEC_402)
        expect(fixtures.hits.tenant).toBe(0)
      })

      it('matches exempt paths below the mount point when the middleware is mounted in a router', async () => {
        const app = start({ subscription: { exemptPaths: ['/me/billing'] } }, { mountAt: '/api' })
        const { key } = await mint(app, unpaid)
        for (const path of ['/api/me/billing', '/api/ME/Billing', '/api/me/billing/']) {
          const res = await get(app, path, key)
          expect(res.status, path).toBe(200)
          expect(res.body).toEqual({ status: 'none' })
        }
        expectJsonError(await get(app, '/api/me/tenant', key), 402, 'payment_required', SPEC_402)
        const paid = await mint(app, acme)
        expect((await get(app, '/api/me/tenant', paid.key)).body).toMatchObject({ tenantSlug: 'acme' })
        expect(fixtures.hits.tenant).toBe(1)
      })

      it('admits a running trial and refuses a lapsed one', async () => {
        const app = start()
        expect((await get(app, '/me/tenant', (await mint(app, trial)).key)).status).toBe(200)
        const res = await get(app, '/me/tenant', (await mint(app, lapsed)).key)
        expectJsonError(res, 402, 'payment_required', SPEC_402)
      })

      it('answers 403 when the key lacks the permission', async () => {
        const app = start()
        const reader = await mint(app, acme, ['keys:read'])
        const plain = await mint(app, acme)
        const res = await get(app, '/me/api-keys', plain.key)
        expectJsonError(res, 403, 'forbidden')
        expect(res.headers['www-authenticate']).toContain('error="insufficient_scope"')
        expect(res.headers['www-authenticate']).toContain('scope="keys:read"')
        const ok = await get(app, '/me/api-keys', reader.key)
        expect(ok.status).toBe(200)
        expect(ok.body.keys.map((k: { keyId: string }) => k.keyId).sort()).toEqual([reader.keyId, plain.keyId].sort())
        expect(JSON.stringify(ok.body)).not.toContain(reader.key)
      })

      it("answers another tenant's resource with a 404 identical to a missing one", async () => {
        const app = start()
        const { key } = await mint(app, acme)
        expect((await get(app, '/me/projects/p-acme', key)).status).toBe(200)
        const foreign = await get(app, '/me/projects/p-globex', key)
        const missing = await get(app, '/me/projects/p-nothing', key)
        expectJsonError(foreign, 404, 'not_found')
        expect(foreign.text).toBe(missing.text)
        expect(foreign.headers['content-type']).toBe(missing.headers['content-type'])
      })

      it("answers revoking another tenant's key with 404, and leaves that key working", async () => {
        const app = start()
        const admin = await mint(app, acme, ['keys:write'])
        const theirs = await mint(app, globex)
        const res = await request(app.handler).delete(`/me/api-keys/${theirs.keyId}`).set('Authorization', `Bearer ${admin.key}`)
        const missing = await request(app.handler).delete('/me/api-keys/AAAAAAAAAAAA').set('Authorization', `Bearer ${admin.key}`)
        expectJsonError(res, 404, 'not_found')
        expect(res.text).toBe(missing.text)
        expect((await get(app, '/me/tenant', theirs.key)).status).toBe(200)
      })

      it('answers unknown routes and handler crashes with the JSON shape, revealing nothing', async () => {
        const app = start()
        const { key } = await mint(app, acme)
        expectJsonError(await get(app, '/me/nothing-here', key), 404, 'not_found')
        const boom = await get(app, '/me/boom', key)
        expectJsonError(boom, 500, 'internal_error', 'An unexpected error occurred.')
        expect(boom.text).not.toContain('hunter2')
        expect(boom.headers['etag']).toBeUndefined()
        expect(Number(boom.headers['content-length'])).toBe(Buffer.byteLength(boom.text))
      })
    })

    describe('rate limits', () => {
      it('admits exactly 60 of 100 concurrent starter requests', async () => {
        const app = start()
        const { key } = await mint(app, acme)
        const responses = await Promise.all(Array.from({ length: 100 }, () => get(app, '/me/tenant', key)))
        const statuses = responses.map((res) => res.status)
        expect(statuses.filter((status) => status === 200)).toHaveLength(60)
        expect(statuses.filter((status) => status === 429)).toHaveLength(40)
        expect(fixtures.hits.tenant).toBe(60)
      })

      it('counts down, then answers the 61st request with 429 and when to retry', async () => {
        const app = start()
        const { key } = await mint(app, acme)
        for (let i = 1; i <= 60; i++) {
          const res = await get(app, '/me/tenant', key)
          expect(res.status).toBe(200)
          expect(res.headers['ratelimit-policy']).toBe(STARTER_POLICY)
          expect(res.headers['ratelimit']).toBe(`"minute";r=${60 - i};t=60, "hour";r=${1000 - i};t=3600`)
        }
        clock.set(T0 + 15_000)
        const res = await get(app, '/me/tenant', key)
        expectJsonError(res, 429, 'rate_limited', 'Rate limit exceeded: 60 requests per minute. Retry in 45 s.')
        expect(res.headers['retry-after']).toBe('45')
        expect(res.headers['ratelimit']).toBe('"minute";r=0;t=45, "hour";r=940;t=3585')
        expect(res.headers['ratelimit-policy']).toBe(STARTER_POLICY)
        expect(res.headers['cache-control']).toBe('no-store')
        expect(fixtures.hits.tenant).toBe(60)

        clock.set(T0 + 60_000)
        const again = await get(app, '/me/tenant', key)
        expect(again.status).toBe(200)
        expect(again.headers['ratelimit']).toBe('"minute";r=59;t=60, "hour";r=939;t=3540')
      })

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
        expect(fixtures.hits.tenant).toBe(5)
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
        expect(fixtures.hits.tenant).toBe(6)
      })

      it('keeps the minute window running across the hour’s end: at most twice the minute limit within 6 ms', async () => {
        const app = start()
        const { key } = await mint(app, acme)
        let admitted = 0
        for (const [at, times] of [[0, 1], [3_539_995, 1], [3_599_994, 59], [3_599_995, 60], [3_600_000, 60]] as const) {
          clock.set(T0 + at)
          for (let i = 0; i < times; i++) if ((await get(app, '/me/tenant', key)).status === 200) admitted++
        }
        // 1 + 1 + 59 + 60 (a new minute at 3,599,995); at 3,600,000 that minute is spent. The old code admitted 179.
        expect(admitted).toBe(121)
        expect(fixtures.hits.tenant).toBe(121)
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
        expect((await get(app, '/me/tenant', (await mint(app, globex)).key)).headers['ratelimit']).toBe('"minute";r=299;t=60, "hour";r=9999;t=3600')
      })

      it('rotates without downtime: both keys work, the old one is revoked, counts carry on', async () => {
        const app = start()
        const old = await mint(app, acme, ['keys:write'], 'production-agent')
        for (let i = 0; i < 10; i++) expect((await get(app, '/me/tenant', old.key)).status).toBe(200)
        const fresh = await mint(app, acme, ['keys:write'], 'production-agent')
        expect((await get(app, '/me/tenant', old.key)).status).toBe(200)
        expect((await get(app, '/me/tenant', fresh.key)).status).toBe(200)

        const revoke = await request(app.handler).delete(`/me/api-keys/${old.keyId}`).set('Authorization', `Bearer ${fresh.key}`)
        expect(revoke.status).toBe(204)
        expectJsonError(await get(app, '/me/tenant', old.key), 401, 'unauthorized')
        const after = await get(app, '/me/tenant', fresh.key)
        expect(after.status).toBe(200)
        // 10 + 2 + the revoke + this one: the count was never reset.
        expect(after.headers['ratelimit']).toBe('"minute";r=46;t=60, "hour";r=986;t=3600')
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

      it('switches the fields to legacy or off', async () => {
        const legacy = start({ rateLimitHeaders: 'legacy' })
        const res = await get(legacy, '/me/tenant', (await mint(legacy, acme)).key)
        expect(res.headers).toMatchObject({
          'x-ratelimit-limit-minute': '60',
          'x-ratelimit-remaining-minute': '59',
          'x-ratelimit-limit-hour': '1000',
          'x-ratelimit-remaining-hour': '999',
          'x-ratelimit-reset': '60',
        })
        expect(res.headers['ratelimit']).toBeUndefined()
        const none = start({ rateLimitHeaders: 'none' })
        const quiet = await get(none, '/me/tenant', (await mint(none, globex)).key)
        expect(quiet.status).toBe(200)
        expect(Object.keys(quiet.headers).filter((name) => name.includes('ratelimit'))).toEqual([])
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
      const costing = (app: ConformanceApp, path: string, key: string, cost: number | string) => get(app, path, key).set('X-Cost', String(cost))

      it('asks the cost function once per request with the method, the mounted path and the tenant', async () => {
        const seen: unknown[] = []
        const app = start({ cost: ({ method, path, tenant: who }) => (seen.push({ method, path, slug: who.tenantSlug }), 1) }, { mountAt: '/api' })
        const { key } = await mint(app, acme)
        expect((await get(app, '/api/me/tenant?verbose=1', key)).status).toBe(200)
        expect(seen).toEqual([{ method: 'GET', path: '/me/tenant', slug: 'acme' }])
      })

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
        expect(fixtures.hits.tenant).toBe(13)
        expect(events.filter((reason) => reason === 'admitted_free')).toHaveLength(10)
        clock.set(T0 + 61_000)
        const after = await get(app, '/me/tenant', key)
        expect(after.headers['ratelimit']).toBe('"minute";r=2;t=60, "hour";r=1;t=3539')
      })

      it('takes a cost of n from both windows at once, or nothing (memory, rate-limiter-flexible, Redis)', async () => {
        const backends: [string, NonNullable<SaikuOptions['limiter']>][] = [
          ['memory', {}],
          ['rate-limiter-flexible', { backend: createRateLimiterBackend() }],
        ]
        const redis = redisUrl === undefined ? undefined : new Redis(redisUrl, { enableOfflineQueue: true, maxRetriesPerRequest: 1 })
        await redis?.ping()
        if (redis !== undefined) backends.push(['redis', { backend: createRedisLimiter({ client: redis, keyPrefix: `cost-${randomUUID()}` }) }])
        try {
          for (const [name, limiter] of backends) {
            const app = start({ ...costOption(), limiter })
            const { key } = await mint(app, tiny, [], name)
            const hits = fixtures.hits.tenant
            const two = await costing(app, '/me/tenant', key, 2)
            expect(two.status, name).toBe(200)
            expect(two.headers['ratelimit']).toMatch(/^"minute";r=1;t=60, "hour";r=3;t=3600$/)
            const refused = await costing(app, '/me/tenant', key, 2)
            expectJsonError(refused, 429, 'rate_limited', 'Rate limit exceeded: 3 requests per minute. This request costs 2; 1 left. Retry in 60 s.')
            expect(refused.headers['retry-after']).toBe('60')
            // Nothing was taken from either window.
            expect(refused.headers['ratelimit']).toMatch(/^"minute";r=1;t=60, "hour";r=3;t=3600$/)
            const one = await costing(app, '/me/tenant', key, 1)
            expect(one.status).toBe(200)
            expect(one.headers['ratelimit']).toMatch(/^"minute";r=0;t=60, "hour";r=2;t=3600$/)
            expect(fixtures.hits.tenant - hits).toBe(2)
          }
        } finally {
          redis?.disconnect()
        }
      })

      it('waits for the window short of the cost, then admits it: Retry-After names the hour when the hour lacks room', async () => {
        const app = start(costOption())
        const { key } = await mint(app, tiny)
        expect((await costing(app, '/me/tenant', key, 3)).status).toBe(200)
        clock.set(T0 + 61_000)
        const byHour = await costing(app, '/me/tenant', key, 3)
        expectJsonError(byHour, 429, 'rate_limited', 'Rate limit exceeded: 5 requests per hour. This request costs 3; 2 left. Retry in 3539 s.')
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
        expectJsonError(huge, 429, 'rate_limited', 'This request costs 4 units, more than the 3 per minute this plan allows: it can never be admitted.')
        expect(huge.headers['retry-after']).toBeUndefined()
        expect(events).toEqual(['cost_exceeds_limit'])
        expect(fixtures.hits.tenant).toBe(0)
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
        expectJsonError(await costing(app, '/me/tenant', key, sent), 500, 'internal_error', 'An unexpected error occurred.')
        expect(errors.map((e) => e.message)).toEqual([message])
        expect(events).toEqual(['invalid_cost'])
        expect(fixtures.hits.tenant).toBe(0)
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
        expect(fixtures.hits.tenant).toBe(4)
      })

      it('takes a cost from both rolling windows or nothing, and a free request still shows the counts', async () => {
        const app = start({ windows: 'rolling', cost: ({ request: req }) => Number(req.headers['x-cost'] ?? 1) })
        const { key } = await mint(app, tiny)
        expect((await get(app, '/me/tenant', key).set('X-Cost', '2')).headers['ratelimit']).toBe('"minute";r=1;t=66, "hour";r=3;t=3960')
        const refused = await get(app, '/me/tenant', key).set('X-Cost', '2')
        expect(refused.status).toBe(429)
        expect(refused.headers['retry-after']).toBe('66')
        const free = await get(app, '/me/tenant', key).set('X-Cost', '0')
        expect(free.status).toBe(200)
        expect(free.headers['ratelimit']).toBe('"minute";r=1;t=66, "hour";r=3;t=3960')
      })
    })

    describe('report-only roll-out', () => {
      interface Seen {
        status: number
        body: unknown
        rateLimit: string | undefined
        retryAfter: string | undefined
      }

      /** The same traffic for every run: a tiny tenant past both windows, an enterprise one, and credentials that fail. */
      async function replay(app: ConformanceApp, keys: { tiny: string; enterprise: string }): Promise<Seen[]> {
        clock.set(T0)
        const seen: Seen[] = []
        const send = async (authorization?: string) => {
          const req = request(app.handler).get('/me/whoami')
          const res = await (authorization === undefined ? req : req.set('Authorization', authorization))
          seen.push({ status: res.status, body: res.body, rateLimit: res.headers['ratelimit'], retryAfter: res.headers['retry-after'] })
        }
        for (let i = 0; i < 5; i++) await send(`Bearer ${keys.tiny}`)
        clock.set(T0 + 61_000)
        for (let i = 0; i < 3; i++) await send(`Bearer ${keys.tiny}`)
        for (let i = 0; i < 2; i++) await send(`Bearer ${keys.enterprise}`)
        await send()
        await send(`Bearer ${mintApiKey().key}`)
        await send('Bearer garbage')
        await send(`Bearer ${keys.tiny}, Bearer ${keys.enterprise}`)
        return seen
      }

      it('refuses nothing, and reports the same decisions and counts as an enforcing run over the same traffic', async () => {
        const enforcingEvents: DecisionEvent[] = []
        const reportedEvents: DecisionEvent[] = []
        const enforcing = start({ onDecision: (event) => enforcingEvents.push(event) })
        const reporting = start({ reportOnly: { limits: true, authentication: true }, onDecision: (event) => reportedEvents.push(event) })
        const keys = { tiny: (await mint(enforcing, tiny)).key, enterprise: (await mint(enforcing, enterprise)).key }

        const enforced = await replay(enforcing, keys)
        const reported = await replay(reporting, keys)

        expect(enforced.map((seen) => seen.status)).toEqual([200, 200, 200, 429, 429, 200, 200, 429, 200, 200, 401, 401, 401, 400])
        expect(reported.map((seen) => seen.status)).toEqual(reported.map(() => 200))
        // The same decisions, told as what would have happened; only refusals that were not applied say so.
        const strip = ({ enforced: _, ...event }: DecisionEvent) => event
        expect(reportedEvents.map(strip)).toEqual(enforcingEvents.map(strip))
        expect(enforcingEvents.every((event) => event.enforced)).toBe(true)
        expect(reportedEvents.map((event) => event.enforced)).toEqual(enforcingEvents.map((event) => event.status === 200))
        expect(reportedEvents.filter((event) => !event.enforced).map((event) => [event.status, event.reason])).toEqual([
          [429, 'rate_limited'],
          [429, 'rate_limited'],
          [429, 'rate_limited'],
          [401, 'missing_credentials'],
          [401, 'unknown_key'],
          [401, 'malformed'],
          [400, 'ambiguous_credentials'],
        ])
        // Counted as usual: the same RateLimit fields on every request, and the same usage after.
        expect(reported.map((seen) => seen.rateLimit)).toEqual(enforced.map((seen) => seen.rateLimit))
        expect(reported.filter((seen) => seen.rateLimit !== undefined)).toHaveLength(10)
        expect(reported.every((seen) => seen.retryAfter === undefined)).toBe(true)
        expect(await reporting.authenticator.usage(tiny.tenantId)).toEqual(await enforcing.authenticator.usage(tiny.tenantId))
        expect((await reporting.authenticator.usage(tiny.tenantId))?.hour).toMatchObject({ used: 5, remaining: 0 })

        // The app tells each kind apart: a principal over its limit, and a request without one.
        expect(reported[3]!.body).toEqual({ tenantId: tiny.tenantId, overLimit: true, unverified: null })
        expect(reported[0]!.body).toEqual({ tenantId: tiny.tenantId, overLimit: false, unverified: null })
        expect(reported[10]!.body).toEqual({ tenantId: null, overLimit: false, unverified: { status: 401, code: 'unauthorized', reason: 'missing_credentials' } })
        expect(reported[13]!.body).toEqual({ tenantId: null, overLimit: false, unverified: { status: 400, code: 'invalid_request', reason: 'ambiguous_credentials' } })
      })

      it('applies to the tiers and tenants chosen only, and a route that needs a principal still refuses an unverified request', async () => {
        for (const limits of [{ tiers: ['tiny'] }, { tenants: [tiny.tenantId] }]) {
          const app = start({ reportOnly: { limits } })
          const tinyKey = (await mint(app, tiny, ['keys:read'])).key
          const enterpriseKey = (await mint(app, enterprise)).key
          clock.set(T0)
          for (let i = 0; i < 4; i++) expect((await get(app, '/me/whoami', tinyKey)).status).toBe(200)
          for (let i = 0; i < 5; i++) expect((await get(app, '/me/whoami', enterpriseKey)).status).toBe(200)
          expectJsonError(await get(app, '/me/whoami', enterpriseKey), 429, 'rate_limited')
          expectJsonError(await get(app, '/me/whoami'), 401, 'unauthorized')
        }
        const app = start({ reportOnly: { authentication: true } })
        expect((await get(app, '/me/whoami', 'sk_live_nonsense')).status).toBe(200)
        expectJsonError(await get(app, '/me/api-keys', 'sk_live_nonsense'), 401, 'unauthorized')
      })

      it('leaves the RateLimit fields off under report-only limits when told to', async () => {
        const app = start({ reportOnly: { limits: { tiers: ['tiny'] }, rateLimitHeaders: false } })
        const tinyKey = (await mint(app, tiny)).key
        const enterpriseKey = (await mint(app, enterprise)).key
        for (let i = 0; i < 4; i++) {
          const res = await get(app, '/me/whoami', tinyKey)
          expect([res.status, res.headers['ratelimit'], res.headers['ratelimit-policy']]).toEqual([200, undefined, undefined])
        }
        expect((await get(app, '/me/whoami', enterpriseKey)).headers['ratelimit']).toBe('"minute";r=4;t=60, "hour";r=99;t=3600')
      })
    })

    describe('hostile traffic', () => {
      const from = (app: ConformanceApp, key: string, forwardedFor?: string) => {
        const req = get(app, '/me/tenant', key)
        return forwardedFor === undefined ? req : req.set('X-Forwarded-For', forwardedFor)
      }

      it('answers repeated failures from one address with 429, without a store lookup and without touching any tenant', async () => {
        const app = start({ failedAuth: { perMinute: 5 } })
        const { key } = await mint(app, acme)
        expect((await get(app, '/me/tenant', key)).headers['ratelimit']).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
        for (let i = 0; i < 5; i++) expect((await from(app, mintApiKey().key)).status).toBe(401)
        const findKey = vi.spyOn(store, 'findKey')
        const blocked = await from(app, mintApiKey().key)
        expectJsonError(blocked, 429, 'rate_limited', 'Too many failed authentication attempts from this address. Retry in 60 s.')
        expect(blocked.headers['retry-after']).toBe('60')
        expect(blocked.headers['ratelimit']).toBeUndefined()
        expectJsonError(await get(app, '/me/tenant', 'garbage'), 429, 'rate_limited')
        expect(findKey).not.toHaveBeenCalled()
        // The tenant's own key, already verified here, still works, and its count moved by one only.
        const own = await get(app, '/me/tenant', key)
        expect(own.status).toBe(200)
        expect(own.headers['ratelimit']).toBe('"minute";r=58;t=60, "hour";r=998;t=3600')
        clock.set(T0 + 60_000)
        expect((await from(app, mintApiKey().key)).status).toBe(401)
      })

      it('lets no more concurrent lookups of unknown keys reach the store than the budget allows', async () => {
        const app = start({ failedAuth: { perMinute: 5 } })
        const findKey = vi.spyOn(store, 'findKey')
        const replies = await Promise.all(Array.from({ length: 100 }, () => from(app, mintApiKey().key)))
        expect(findKey.mock.calls.length).toBeLessThanOrEqual(5)
        expect(replies.filter((res) => res.status === 429)).toHaveLength(100 - findKey.mock.calls.length)
        expect(replies.every((res) => res.status === 401 || res.status === 429)).toBe(true)
      })

      it('gives a spoofed X-Forwarded-For no fresh budget when proxies are not trusted', async () => {
        const app = start({ failedAuth: { perMinute: 3 } })
        for (let i = 0; i < 3; i++) expect((await from(app, mintApiKey().key, `198.51.100.${i}`)).status).toBe(401)
        expect((await from(app, mintApiKey().key, '198.51.100.99')).status).toBe(429)
      })

      it('counts clients apart behind a trusted proxy, so one client cannot lock out another', async () => {
        const app = start({ failedAuth: { perMinute: 3 } }, { trustProxy: true })
        for (let i = 0; i < 4; i++) await from(app, mintApiKey().key, '198.51.100.7')
        expect((await from(app, mintApiKey().key, '198.51.100.7')).status).toBe(429)
        // Another client, with a valid key this process has never seen: verified as usual.
        const { key } = await mint(app, globex)
        expect((await from(app, key, '198.51.100.8')).status).toBe(200)
        expect((await from(app, mintApiKey().key, '198.51.100.8')).status).toBe(401)
      })

      it('groups IPv6 clients by /64, so rotating addresses gives no fresh budget', async () => {
        const app = start({ failedAuth: { perMinute: 3 } }, { trustProxy: true })
        for (let i = 0; i < 3; i++) expect((await from(app, mintApiKey().key, `2001:db8:1:2::${i + 1}`)).status).toBe(401)
        expect((await from(app, mintApiKey().key, '2001:db8:1:2:ffff:ffff:ffff:ffff')).status).toBe(429)
        expect((await from(app, mintApiKey().key, '2001:db8:1:3::1')).status).toBe(401)
      })

      it('counts a request once when the middleware is mounted twice', async () => {
        const app = start({}, { mountTwice: true })
        const { key } = await mint(app, acme)
        expect((await get(app, '/me/tenant', key)).headers['ratelimit']).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
        expect((await get(app, '/me/tenant', key)).headers['ratelimit']).toBe('"minute";r=58;t=60, "hour";r=998;t=3600')
        expect(fixtures.hits.tenant).toBe(2)
      })

      it('counts a request once per limiter when two instances share it (memory, Redis)', async () => {
        const backends: [string, NonNullable<SaikuOptions['limiter']>][] = [['memory', { backend: createMemoryLimiter() }]]
        const redis = redisUrl === undefined ? undefined : new Redis(redisUrl, { enableOfflineQueue: true, maxRetriesPerRequest: 1 })
        // The backend fails at once while its client is not ready: connect first.
        await redis?.ping()
        if (redis !== undefined) backends.push(['redis', { backend: createRedisLimiter({ client: redis, keyPrefix: `conformance-${randomUUID()}` }) }])
        try {
          for (const [name, limiter] of backends) {
            const app = start({ limiter }, { secondInstance: true })
            const { key } = await mint(app, acme, [], name)
            const hits = fixtures.hits.tenant
            expect((await get(app, '/me/tenant', key)).headers['ratelimit']).toMatch(/^"minute";r=59;t=60, "hour";r=999;t=\d+$/)
            expect((await get(app, '/me/tenant', key)).headers['ratelimit']).toMatch(/^"minute";r=58;t=\d+, "hour";r=998;t=\d+$/)
            expect(fixtures.hits.tenant - hits).toBe(2)
          }
        } finally {
          redis?.disconnect()
        }
      })

      it('counts a request once in each of two limiters when two instances count apart', async () => {
        const app = start({}, { secondInstance: true })
        const { key } = await mint(app, acme)
        // The second instance's own limiter answers last: it counted this request once, as did the first.
        expect((await get(app, '/me/tenant', key)).headers['ratelimit']).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
        expect((await get(app, '/me/tenant', key)).headers['ratelimit']).toBe('"minute";r=58;t=60, "hour";r=998;t=3600')
      })

      it("passes a handler's error on unchanged and once", async () => {
        const app = start()
        const { key } = await mint(app, acme)
        expectJsonError(await get(app, '/me/boom', key), 500, 'internal_error')
        expect(fixtures.errors).toHaveLength(1)
        expect((fixtures.errors[0] as Error).message).toBe('database password is hunter2')
      })

      it('never answers twice, nor with a 401, once a response has started', async () => {
        const app = start()
        const { key } = await mint(app, acme)
        const server = createServer(app.handler)
        server.listen(0, '127.0.0.1')
        await once(server, 'listening')
        try {
          const { port } = server.address() as AddressInfo
          const req = httpRequest({ host: '127.0.0.1', port, path: '/me/fail-after-write', headers: { authorization: `Bearer ${key}` } })
          req.end()
          const [res] = (await once(req, 'response')) as [IncomingMessage]
          let body = ''
          res.on('data', (chunk: Buffer) => (body += chunk.toString()))
          await new Promise((resolve) => {
            res.on('close', resolve)
            res.on('error', resolve)
          })
          expect(res.statusCode).toBe(200)
          expect(body).toBe('{"partial":')
          expect(fixtures.errors).toHaveLength(1)
          expect((fixtures.errors[0] as Error).message).toBe('failed after the response started')
        } finally {
          server.close()
        }
      })
    })

    describe('shared addresses and store faults', () => {
      const garbage = () => [`${mintApiKey().key.slice(0, -1)}0`, mintApiKey().key, 'eyJhbGciOiJIUzI1NiJ9.e30.x', 'garbage']

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
        const app = start({ failedAuth: { perMinute: 5 }, cache: { ttlMs: 1_000 } })
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
        expect(garbageLookups).toBeLessThanOrEqual(5)
        // The valid key's own lookups: refreshed ahead of expiry, about one per half TTL.
        expect(findKey.mock.calls.length - garbageLookups).toBeLessThanOrEqual(2 + (80 * 250) / 500)
      })

      it('lets a key verified here recently reach the store past its address’s spent budget, though its cache entry expired', async () => {
        const app = start({ failedAuth: { perMinute: 3 }, cache: { ttlMs: 1_000 } })
        const { key } = await mint(app, acme)
        expect((await get(app, '/me/tenant', key)).status).toBe(200)
        for (let i = 0; i < 3; i++) expect((await get(app, '/me/tenant', mintApiKey().key)).status).toBe(401)
        expect((await get(app, '/me/tenant', mintApiKey().key)).status).toBe(429)
        clock.advance(5_000)
        expect((await get(app, '/me/tenant', key)).status).toBe(200)
        // A key this process never verified still waits for the budget.
        expectJsonError(await get(app, '/me/tenant', (await mint(app, globex)).key), 429, 'rate_limited')
      })

      it('admits forty concurrent first requests of one fresh key with one lookup, whatever the failure budget', async () => {
        const app = start({ failedAuth: { perMinute: 5 } })
        const { key } = await mint(app, globex)
        const findKey = store.findKey.bind(store)
        const spy = vi.spyOn(store, 'findKey').mockImplementation((keyId) => new Promise((resolve) => setTimeout(() => resolve(findKey(keyId)), 50)))
        const replies = await Promise.all(Array.from({ length: 40 }, () => get(app, '/me/tenant', key)))
        expect(replies.map((res) => res.status)).toEqual(Array(40).fill(200))
        expect(spy).toHaveBeenCalledTimes(1)
        // What the lookup spent in advance came back: the whole budget is left for real failures.
        for (let i = 0; i < 5; i++) expect((await get(app, '/me/tenant', mintApiKey().key)).status).toBe(401)
        expect((await get(app, '/me/tenant', mintApiKey().key)).status).toBe(429)
      })

      it('never answers 401 or 429 when the limiter fails, and counts nothing against the address', async () => {
        const app = start({ failedAuth: { perMinute: 2 }, limiter: { backend: { consume: () => Promise.reject(new Error('ECONNREFUSED')) } } })
        const { key } = await mint(app, acme)
        for (let i = 0; i < 6; i++) expectJsonError(await get(app, '/me/tenant', key), 503, 'service_unavailable')
        for (let i = 0; i < 2; i++) expect((await get(app, '/me/tenant', mintApiKey().key)).status).toBe(401)
        expect((await get(app, '/me/tenant', mintApiKey().key)).status).toBe(429)
      })
    })

    describe('signed tokens', () => {
      let signer: { privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey']; jwk: JWK }
      beforeAll(async () => {
        const pair = await generateKeyPair('ES256', { extractable: true })
        signer = { privateKey: pair.privateKey, jwk: { ...(await exportJWK(pair.publicKey)), kid: 'k1' } }
      })
      const jwtOptions = () => ({ jwt: { key: signer.jwk, issuer: 'https://id.test', audience: 'saiku', algorithms: ['ES256' as const] } })
      const token = (claims: Record<string, unknown>, expiresAt: number) =>
        new SignJWT({ tenant_id: acme.tenantId, scope: 'keys:read', ...claims })
          .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
          .setIssuer('https://id.test')
          .setAudience('saiku')
          .setIssuedAt(Math.floor(T0 / 1000))
          .setExpirationTime(Math.floor(expiresAt / 1000))
          .sign(signer.privateKey)

      it('accepts a JWT beside API keys, for the same tenant and the same budget', async () => {
        const app = start(jwtOptions())
        const { key } = await mint(app, acme)
        expect((await get(app, '/me/tenant', key)).status).toBe(200)
        const res = await get(app, '/me/tenant', await token({}, T0 + 300_000))
        expect(res.status).toBe(200)
        expect(res.body).toEqual({ tenantId: acme.tenantId, tenantSlug: 'acme', tier: 'starter', connectionName: 'acme-warehouse' })
        expect(res.headers['ratelimit']).toBe('"minute";r=58;t=60, "hour";r=998;t=3600')
        expect((await get(app, '/me/api-keys', await token({}, T0 + 300_000))).status).toBe(200)
        expectJsonError(await get(app, '/me/api-keys', await token({ scope: 'billing:read' }, T0 + 300_000)), 403, 'forbidden')
      })

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
        tokens = createTokenIssuer({ privateKey: { ...(await exportJWK(pair.privateKey)), kid: 'server-1' }, issuer: 'https://api.test', audience: 'https://api.test' })
      })
      const withTokens = (options: SaikuOptions = {}): SaikuOptions => ({
        ...options,
        jwt: { key: tokens.jwks().keys[0]!, issuer: 'https://api.test', audience: 'https://api.test', algorithms: ['ES256'] },
      })
      async function exchange(app: ConformanceApp, key: string): Promise<string> {
        const decision = await app.authenticator.authenticate({ headers: { authorization: `Bearer ${key}` }, method: 'POST', url: '/me/tokens', ip: '127.0.0.1' })
        if (!decision.ok) throw new Error(`exchange refused: ${decision.status}`)
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
        const created = await app.authenticator.keys.create(acme.tenantId, { label: 'short', expiresAt: new Date(T0 + 120_000) })
        const token = await exchange(app, created.key)
        const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { exp: number; key_id: string; environment: string }
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
        vi.spyOn(store, 'findKey').mockImplementation((keyId) => new Promise((resolve) => setTimeout(() => resolve(findKey(keyId)), 50)))
        expect((await Promise.all(Array.from({ length: 20 }, () => get(app, '/me/tenant', key)))).map((res) => res.status)).toEqual(Array(20).fill(200))
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

    describe('failures', () => {
      const failingLimiter: LimiterBackend = { consume: () => Promise.reject(new Error('ECONNREFUSED 127.0.0.1:6379')) }

      it('answers 503 when the key store throws and the policy is closed, never 401', async () => {
        const app = start()
        const { key } = await mint(app, acme)
        vi.spyOn(store, 'findKey').mockRejectedValue(new Error('connection refused: password=hunter2'))
        const res = await get(app, '/me/tenant', key)
        expectJsonError(res, 503, 'service_unavailable')
        expect(res.text).not.toContain('hunter2')
      })

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
        const app = start({ limiter: { backend: { consume: () => new Promise(() => {}) }, timeoutMs: 50 }, onError: (e) => errors.push(e) })
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

      it('answers a throwing exemption predicate with a JSON 500, never a rejection', async () => {
        const errors: Error[] = []
        const app = start({
          subscription: {
            isExempt: () => {
              throw new Error('predicate bug')
            },
          },
          onError: (e) => errors.push(e),
        })
        const res = await get(app, '/me/tenant', (await mint(app, unpaid)).key)
        expectJsonError(res, 500, 'internal_error', 'An unexpected error occurred.')
        expect(errors[0]?.message).toBe('predicate bug')
      })

      it('serves a stale record when the key store fails and the policy allows it', async () => {
        const errors: Error[] = []
        const app = start({ cache: { ttlMs: 1_000 }, failurePolicy: { keyStore: 'serve-stale' }, onError: (e) => errors.push(e) })
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
        const app = start({ cache: { ttlMs: 1_000, maxStaleMs: 5_000 }, failurePolicy: { keyStore: 'serve-stale' }, onError: () => {} })
        const { key } = await mint(app, acme)
        expect((await get(app, '/me/tenant', key)).status).toBe(200)
        vi.spyOn(store, 'findKey').mockRejectedValue(new Error('down'))
        vi.spyOn(store, 'findTenant').mockRejectedValue(new Error('down'))
        clock.set(T0 + 1_000 + 4_999)
        expect((await get(app, '/me/tenant', key)).status).toBe(200)
        clock.set(T0 + 1_000 + 5_000)
        expectJsonError(await get(app, '/me/tenant', key), 503, 'service_unavailable')
      })

      it('answers 503, never 500, when the store fails under key management', async () => {
        const app = start()
        const { key, keyId } = await mint(app, acme, ['keys:write'])
        expect((await get(app, '/me/tenant', key)).status).toBe(200)
        vi.spyOn(store, 'revokeKey').mockRejectedValue(new Error('ECONNREFUSED'))
        const res = await request(app.handler).delete(`/me/api-keys/${keyId}`).set('Authorization', `Bearer ${key}`)
        expectJsonError(res, 503, 'service_unavailable')
        vi.spyOn(store, 'createKey').mockRejectedValue(new Error('ECONNREFUSED'))
        await expect(app.authenticator.keys.create(acme.tenantId, { label: 'during-outage' })).rejects.toMatchObject({ name: 'SaikuStoreError' })
      })

      it('answers 503 when the limiter fails and the policy is closed, never 429', async () => {
        const errors: Error[] = []
        const app = start({ limiter: { backend: failingLimiter }, onError: (e) => errors.push(e) })
        const res = await get(app, '/me/tenant', (await mint(app, acme)).key)
        expectJsonError(res, 503, 'service_unavailable')
        expect(errors[0]?.name).toBe('SaikuStoreError')
        expect(fixtures.hits.tenant).toBe(0)
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
        const hanging = () => ({ consume: () => new Promise(() => {}), reward: () => new Promise(() => {}), get: () => new Promise(() => {}) })
        const app = start({ limiter: { factory: hanging as never, timeoutMs: 50 }, onError: (e) => errors.push(e) })
        expectJsonError(await get(app, '/me/tenant', (await mint(app, acme)).key), 503, 'service_unavailable')
        expect(errors).toMatchObject([{ name: 'SaikuStoreError', source: 'limiter', timedOut: true }])
      })
    })
  })
}
