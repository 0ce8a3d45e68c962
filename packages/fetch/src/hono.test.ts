// What only the Hono middleware decides: a refusal ends the chain, the principal in c.get('saiku'), the fields
// set on c.res after the handler, the address from getConnInfo, and Hono's error and not-found handlers.
// Everything the adapters share is in test/conformance.
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { serve, type ServerType } from '@hono/node-server'
import { getConnInfo } from '@hono/node-server/conninfo'
import { Hono } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { afterEach, beforeEach, describe, expect, expectTypeOf, it, vi, type MockInstance } from 'vitest'
import { createKeyManager, mintApiKey } from '@saiku/core'
import { MemoryKeyStore, SaikuHttpError, type DecisionEvent, type SaikuPrincipal, type TenantRecord } from './index.js'
import {
  requirePermission,
  saikuAuth,
  saikuErrors,
  saikuNotFound,
  type SaikuEnv,
  type SaikuHonoOptions,
} from './hono.js'
import { createApp as createCorsApp } from './readme/hono-cors.js'

const acme: TenantRecord = {
  tenantId: '00000000-0000-4000-8000-acme00000000',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'acme-warehouse',
  subscription: { status: 'active', trialEndsAt: null },
}
const FIRST_WINDOW = '"minute";r=59;t=60, "hour";r=999;t=3600'

const closers: (() => unknown)[] = []
let warnings: MockInstance<typeof process.emitWarning>
beforeEach(() => {
  warnings = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
})
afterEach(async () => {
  for (const close of closers.splice(0)) await close()
})

/** Serves the app on a loopback port, as @hono/node-server does in production. */
async function listen(app: Hono<SaikuEnv>): Promise<string> {
  const server: ServerType = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' })
  closers.push(() => new Promise((resolve) => server.close(resolve)))
  await once(server, 'listening')
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

function setUp(options: SaikuHonoOptions = {}) {
  const store = new MemoryKeyStore({ tenants: [acme] })
  const auth = saikuAuth(store, { getConnInfo, ...options })
  closers.push(() => auth.authenticator.close())
  const key = async (permissions: string[] = []) =>
    (await auth.authenticator.keys.create(acme.tenantId, { label: 'agent', permissions })).key
  const app = new Hono<SaikuEnv>()
  app.use(auth)
  app.onError(saikuErrors({ onError: () => {} }))
  app.notFound(saikuNotFound())
  return { store, auth, key, app }
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` })

describe('@saiku/fetch/hono', () => {
  it('never lets an invalid key reach a handler, and gives an admitted one c.get("saiku")', async () => {
    const { app, key } = setUp()
    const handled = vi.fn()
    app.get('/me/tenant', (c) => {
      handled()
      expectTypeOf(c.get('saiku')).toEqualTypeOf<SaikuPrincipal | null>()
      return c.json(c.get('saiku')!.tenant)
    })
    const url = await listen(app)
    for (const headers of [{}, bearer(mintApiKey().key), bearer('garbage'), { authorization: 'Basic eDp5' }]) {
      const res = await fetch(`${url}/me/tenant`, { headers })
      expect(res.status).toBe(401)
      expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8')
      expect(((await res.json()) as { error: string }).error).toBe('unauthorized')
    }
    expect(handled).not.toHaveBeenCalled()
    const ok = await fetch(`${url}/me/tenant`, { headers: bearer(await key()) })
    expect(ok.status).toBe(200)
    expect(ok.headers.get('ratelimit')).toBe(FIRST_WINDOW)
    expect(await ok.json()).toMatchObject({ tenantSlug: 'acme' })
    expect(handled).toHaveBeenCalledTimes(1)
  })

  it('answers two Authorization header lines with the 400', async () => {
    const { app, key } = setUp()
    app.get('/me/tenant', (c) => c.json(c.get('saiku')!.tenant))
    const url = await listen(app)
    const headers = new Headers()
    headers.append('authorization', `Bearer ${await key()}`)
    headers.append('authorization', `Bearer ${mintApiKey().key}`)
    const res = await fetch(`${url}/me/tenant`, { headers })
    expect(res.status).toBe(400)
    expect(((await res.json()) as { error: string }).error).toBe('invalid_request')
  })

  it('sets the fields on a response whose headers are immutable', async () => {
    const { app, key } = setUp()
    app.get('/old', () => Response.redirect('http://127.0.0.1/new', 308))
    const url = await listen(app)
    const res = await fetch(`${url}/old`, { headers: bearer(await key()), redirect: 'manual' })
    expect(res.status).toBe(308)
    expect(res.headers.get('location')).toBe('http://127.0.0.1/new')
    expect(res.headers.get('ratelimit')).toBe(FIRST_WINDOW)
  })

  it('under report-only authentication, counts a request let through once when mounted twice', async () => {
    const events: DecisionEvent[] = []
    const store = new MemoryKeyStore({ tenants: [acme] })
    const auth = saikuAuth(store, {
      getConnInfo: () => ({ remote: { address: '192.0.2.1' } }),
      reportOnly: { authentication: true },
      failedAuth: { perMinute: 2 },
      onDecision: (e) => void events.push(e),
    })
    closers.push(() => auth.authenticator.close())
    const app = new Hono<SaikuEnv>()
    app.use(auth)
    app.use(auth)
    app.get('/me/tenant', (c) => c.json({ unverified: c.get('saikuUnverified') }))
    for (let i = 0; i < 2; i++) {
      const res = await app.request('/me/tenant', { headers: bearer(mintApiKey().key) })
      expect(res.status).toBe(200)
      expect(await res.json()).toEqual({ unverified: { status: 401, code: 'unauthorized', reason: 'unknown_key' } })
    }
    // Two requests, two failures: within the budget of two, so neither would have been a 429.
    expect(events.map((e) => [e.status, e.enforced])).toEqual([
      [401, false],
      [401, false],
    ])
  })

  it('counts failures by the address getConnInfo gives', async () => {
    const { app } = setUp({ failedAuth: { perMinute: 2 } })
    app.get('/me/tenant', (c) => c.json(c.get('saiku')!.tenant))
    const url = await listen(app)
    const statuses = []
    for (let i = 0; i < 3; i++)
      statuses.push((await fetch(`${url}/me/tenant`, { headers: bearer(mintApiKey().key) })).status)
    // A spoofed X-Forwarded-For, not named in the options, buys no fresh budget.
    const spoofed = await fetch(`${url}/me/tenant`, {
      headers: { ...bearer(mintApiKey().key), 'x-forwarded-for': '198.51.100.7' },
    })
    expect([...statuses, spoofed.status]).toEqual([401, 401, 429, 429])
    expect(warnings.mock.calls.filter(([, o]) => (o as { code?: string })?.code === 'SAIKU_NO_CLIENT_ADDRESS')).toEqual(
      [],
    )
  })

  it('answers requirePermission, thrown errors and unknown routes with the JSON shape, keeping the fields', async () => {
    const { app, key } = setUp()
    app.get('/me/api-keys', requirePermission('keys:read'), (c) => c.json({ keys: [] }))
    app.get('/me/projects/:id', () => {
      throw new SaikuHttpError('not_found', 'No such project.')
    })
    const url = await listen(app)
    const plain = await key()
    const forbidden = await fetch(`${url}/me/api-keys`, { headers: bearer(plain) })
    expect(forbidden.status).toBe(403)
    expect(((await forbidden.json()) as { error: string }).error).toBe('forbidden')
    expect((await fetch(`${url}/me/api-keys`, { headers: bearer(await key(['keys:read'])) })).status).toBe(200)
    const thrown = await fetch(`${url}/me/projects/p-1`, { headers: bearer(plain) })
    expect(thrown.status).toBe(404)
    expect(await thrown.json()).toEqual({ error: 'not_found', message: 'No such project.' })
    expect(thrown.headers.get('ratelimit')).toMatch(/^"minute";r=\d+;t=60/)
    const unknown = await fetch(`${url}/nowhere`, { headers: bearer(plain) })
    expect(unknown.status).toBe(404)
    expect(((await unknown.json()) as { error: string }).error).toBe('not_found')
    // Unknown routes are authenticated first, as every route is.
    expect((await fetch(`${url}/nowhere`)).status).toBe(401)
  })

  for (const [kind, onError] of [
    [
      'throws',
      () => {
        throw new Error('hono reporter down: throws')
      },
    ],
    [
      'rejects',
      async () => {
        await Promise.resolve()
        throw new Error('hono reporter down: rejects')
      },
    ],
  ] as const) {
    it(`answers the JSON 500 when saikuErrors' onError ${kind}, with one warning per distinct message`, async () => {
      const store = new MemoryKeyStore({ tenants: [acme] })
      const auth = saikuAuth(store, { getConnInfo })
      closers.push(() => auth.authenticator.close())
      const app = new Hono<SaikuEnv>()
      app.use(auth)
      app.onError(saikuErrors({ onError }))
      app.get('/boom', () => {
        throw new Error('database password is hunter2')
      })
      const url = await listen(app)
      const key = (await auth.authenticator.keys.create(acme.tenantId, { label: 'agent' })).key
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`${url}/boom`, { headers: bearer(key) })
        expect(res.status).toBe(500)
        const text = await res.text()
        expect(JSON.parse(text)).toEqual({ error: 'internal_error', message: 'An unexpected error occurred.' })
        expect(text).not.toContain('hunter2')
      }
      const failed = () => warnings.mock.calls.filter(([message]) => String(message).includes(`down: ${kind}`))
      await vi.waitFor(() => expect(failed()).toHaveLength(1), { timeout: 10_000 })
      expect(String(failed()[0]![0])).toBe(
        `Saiku auth: the saikuErrors().onError hook threw or rejected, and was ignored: Error: hono reporter down: ${kind}`,
      )
    })
  }

  it('answers a getConnInfo that throws (no Node socket under app.request) with the JSON 500, reported', async () => {
    const errors: Error[] = []
    const store = new MemoryKeyStore({ tenants: [acme] })
    const auth = saikuAuth(store, { getConnInfo, onError: (error) => void errors.push(error) })
    closers.push(() => auth.authenticator.close())
    const app = new Hono<SaikuEnv>()
    app.use(auth)
    app.get('/me/tenant', (c) => c.json(c.get('saiku')!.tenant))
    // A failure needs the address, and app.request gives getConnInfo no socket to read.
    const res = await app.request('/me/tenant', { headers: bearer(mintApiKey().key) })
    expect(res.status).toBe(500)
    expect(await res.json()).toEqual({ error: 'internal_error', message: 'An unexpected error occurred.' })
    expect(errors).toHaveLength(1)
  })

  it('answers a getConnInfo that returns a promise with the JSON 500, reported, never an unhandled rejection', async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown) => void unhandled.push(reason)
    process.on('unhandledRejection', onUnhandled)
    try {
      const errors: Error[] = []
      const store = new MemoryKeyStore({ tenants: [acme] })
      const asyncConnInfo = (async () => {
        throw new Error('no socket yet')
      }) as unknown as typeof getConnInfo
      const auth = saikuAuth(store, { getConnInfo: asyncConnInfo, onError: (error) => void errors.push(error) })
      closers.push(() => auth.authenticator.close())
      const app = new Hono<SaikuEnv>()
      app.use(auth)
      app.get('/me/tenant', (c) => c.json(c.get('saiku')!.tenant))
      const res = await app.request('/me/tenant', { headers: bearer(mintApiKey().key) })
      expect(res.status).toBe(500)
      expect(await res.json()).toEqual({ error: 'internal_error', message: 'An unexpected error occurred.' })
      expect(errors.map((error) => error.message)).toEqual([
        'getConnInfo(c): expected the connection info, returned synchronously (not a promise), got an object',
      ])
      await new Promise((resolve) => setTimeout(resolve, 20))
      expect(unhandled).toEqual([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })

  it("answers Hono's HTTPException with the JSON shape of its status, reporting nothing", async () => {
    const errors: unknown[] = []
    const store = new MemoryKeyStore({ tenants: [acme] })
    const auth = saikuAuth(store, { getConnInfo })
    closers.push(() => auth.authenticator.close())
    const app = new Hono<SaikuEnv>()
    app.use(auth)
    app.onError(saikuErrors({ onError: (error) => void errors.push(error) }))
    app.post('/me/items', () => {
      throw new HTTPException(400, { message: 'Malformed JSON in request body' })
    })
    const url = await listen(app)
    const key = (await auth.authenticator.keys.create(acme.tenantId, { label: 'agent' })).key
    const res = await fetch(`${url}/me/items`, { method: 'POST', headers: bearer(key), body: '{' })
    expect(res.status).toBe(400)
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8')
    expect(((await res.json()) as { error: string }).error).toBe('invalid_request')
    expect(res.headers.get('ratelimit')).toBe(FIRST_WINDOW)
    expect(errors).toEqual([])
  })

  it('refuses a bad option at construction, naming it', () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    expect(() => saikuAuth(store, { getConnInfo: 'socket' as never })).toThrow(/^getConnInfo: expected a function/)
    expect(() => saikuAuth(store, { clientAddressHeader: '' })).toThrow(/^clientAddressHeader: expected a header name/)
    expect(() => saikuErrors({ notFound: false } as never)).toThrow(
      /^saikuErrors\(\): expected an options object without notFound/,
    )
  })
})

describe('@saiku/fetch/hono with hono/cors mounted first (README)', () => {
  it('answers a preflight 204 with no Authorization, uncounted, and exposes the fields to scripts', async () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const { key } = await createKeyManager(store).create(acme.tenantId, { label: 'browser-backend' })
    const url = await listen(createCorsApp(store))
    for (let i = 0; i < 5; i++) {
      const preflight = await fetch(`${url}/me/tenant`, {
        method: 'OPTIONS',
        headers: {
          origin: 'https://app.example.com',
          'access-control-request-method': 'GET',
          'access-control-request-headers': 'authorization',
        },
      })
      expect(preflight.status).toBe(204)
      expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example.com')
      expect(preflight.headers.get('ratelimit')).toBeNull()
    }
    // The preflights cost the tenant nothing: the first real call is the first counted.
    const call = await fetch(`${url}/me/tenant`, { headers: { origin: 'https://app.example.com', ...bearer(key) } })
    expect(call.status).toBe(200)
    expect(call.headers.get('ratelimit')).toBe(FIRST_WINDOW)
    expect(call.headers.get('access-control-expose-headers')).toBe('RateLimit,RateLimit-Policy,Retry-After')
    // A cross-origin call without a key is refused as any other, with what the page needs to read the refusal.
    const refused = await fetch(`${url}/me/tenant`, { headers: { origin: 'https://app.example.com' } })
    expect(refused.status).toBe(401)
    expect(refused.headers.get('access-control-allow-origin')).toBe('https://app.example.com')
  })
})
