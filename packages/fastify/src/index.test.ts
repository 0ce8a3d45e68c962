// What only the Fastify plugin decides: the hook it authenticates in, the contexts it protects, and
// Fastify's own routing and errors. Everything the adapters share is in test/conformance.
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { MemoryKeyStore, requirePermission, saikuAuth, saikuErrors, type TenantRecord } from './index.js'

const acme: TenantRecord = {
  tenantId: '00000000-0000-4000-8000-acme00000000',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'acme-warehouse',
  subscription: { status: 'active', trialEndsAt: null },
}
const unpaid: TenantRecord = {
  ...acme,
  tenantId: '00000000-0000-4000-8000-unpaid000000',
  tenantSlug: 'unpaid',
  subscription: { status: 'none' },
}
const JSON_TYPE = 'application/json; charset=utf-8'

const apps: FastifyInstance[] = []
const closers: (() => void)[] = []
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close()
  for (const close of closers.splice(0)) close()
})

function track(app: FastifyInstance): FastifyInstance {
  apps.push(app)
  return app
}

async function keyFor(auth: ReturnType<typeof saikuAuth>, tenant: TenantRecord = acme): Promise<string> {
  closers.push(() => auth.authenticator.close())
  return (await auth.authenticator.keys.create(tenant.tenantId, { label: 'agent', permissions: ['keys:read'] })).key
}

describe('@saiku/fastify', () => {
  it('refuses in onRequest, before the body is read or parsed', async () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const auth = saikuAuth(store)
    const key = await keyFor(auth)
    const app = track(Fastify())
    let bodiesRead = 0
    app.addHook('preParsing', async (_request, _reply, payload) => {
      bodiesRead++
      return payload
    })
    app.register(auth)
    app.register(saikuErrors())
    app.post('/me/items', async (request) => ({ received: request.body }))

    const refused = await app.inject({
      method: 'POST',
      url: '/me/items',
      headers: { 'content-type': 'application/json' },
      payload: '{"broken',
    })
    expect([refused.statusCode, refused.headers['content-type'], refused.json()]).toEqual([
      401,
      JSON_TYPE,
      { error: 'unauthorized', message: 'API key missing or invalid.' },
    ])
    expect(refused.headers['www-authenticate']).toBe('Bearer realm="saiku"')
    expect(bodiesRead).toBe(0)

    // Admitted, the same body reaches Fastify's parser, and its error is the JSON 400 with the request's counts.
    const admitted = await app.inject({
      method: 'POST',
      url: '/me/items',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      payload: '{"broken',
    })
    expect([admitted.statusCode, admitted.headers['content-type'], admitted.json()]).toEqual([
      400,
      JSON_TYPE,
      { error: 'invalid_request', message: 'The request body is not valid JSON.' },
    ])
    expect(admitted.headers['ratelimit']).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
    expect(bodiesRead).toBe(1)
  })

  it('protects only the context it is registered in, and its children', async () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const auth = saikuAuth(store)
    const key = await keyFor(auth)
    const app = track(Fastify())
    app.register(saikuErrors())
    app.get('/health', async (request) => ({ ok: true, saiku: request.saiku }))
    app.register(
      async (api) => {
        api.register(auth)
        // Its own not-found handler: unknown routes below the prefix are authenticated first, as its routes are.
        api.register(saikuErrors())
        api.get('/me/tenant', async (request) => request.saiku!.tenant)
        api.register(async (child) => {
          child.get('/me/nested', async (request) => ({ tenantSlug: request.saiku!.tenant.tenantSlug }))
        })
      },
      { prefix: '/api' },
    )
    app.register(async (open) => {
      open.get('/public', async (request) => ({ saiku: request.saiku, unverified: request.saikuUnverified }))
    })

    expect((await app.inject('/health')).json()).toEqual({ ok: true, saiku: null })
    expect((await app.inject('/public')).json()).toEqual({ saiku: null, unverified: null })
    for (const url of ['/api/me/tenant', '/api/me/nested']) {
      const refused = await app.inject(url)
      expect([url, refused.statusCode, refused.json().error]).toEqual([url, 401, 'unauthorized'])
    }
    const authorization = `Bearer ${key}`
    expect((await app.inject({ url: '/api/me/tenant', headers: { authorization } })).json()).toMatchObject({
      tenantSlug: 'acme',
    })
    const nested = await app.inject({ url: '/api/me/nested', headers: { authorization } })
    expect([nested.statusCode, nested.json(), nested.headers['ratelimit']]).toEqual([
      200,
      { tenantSlug: 'acme' },
      '"minute";r=58;t=60, "hour";r=998;t=3600',
    ])
    expect((await app.inject('/api/nothing')).statusCode).toBe(401)
    expect((await app.inject({ url: '/api/nothing', headers: { authorization } })).json().error).toBe('not_found')
    // Unknown routes outside the protected context are the JSON 404 without authentication.
    expect([(await app.inject('/nothing')).statusCode, (await app.inject('/nothing')).json().error]).toEqual([
      404,
      'not_found',
    ])
  })

  it('serves sibling contexts that each register saikuAuth, each counting in its own limiter', async () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const [first, second] = [saikuAuth(store), saikuAuth(store)]
    const key = await keyFor(first)
    closers.push(() => second.authenticator.close())
    const app = track(Fastify())
    app.register(saikuErrors())
    for (const [prefix, auth] of [
      ['/a', first],
      ['/b', second],
    ] as const) {
      app.register(
        async (scope) => {
          scope.register(auth)
          scope.get('/me/tenant', async (request) => request.saiku!.tenant)
        },
        { prefix },
      )
    }
    const headers = { authorization: `Bearer ${key}` }
    expect((await app.inject({ url: '/a/me/tenant', headers })).headers['ratelimit']).toBe(
      '"minute";r=59;t=60, "hour";r=999;t=3600',
    )
    expect((await app.inject({ url: '/b/me/tenant', headers })).headers['ratelimit']).toBe(
      '"minute";r=59;t=60, "hour";r=999;t=3600',
    )
  })

  it("exempts no path Fastify's default routing does not serve: /ME/billing is a 404, never the billing route", async () => {
    const store = new MemoryKeyStore({ tenants: [unpaid] })
    const auth = saikuAuth(store, { subscription: { exemptPaths: ['/me/billing'] } })
    const key = await keyFor(auth, unpaid)
    const app = track(Fastify())
    app.register(auth)
    app.register(saikuErrors())
    let billed = 0
    app.get('/me/billing', async () => ({ billed: ++billed }))
    app.get('/me/tenant', async () => ({ served: true }))
    const headers = { authorization: `Bearer ${key}` }
    expect((await app.inject({ url: '/me/billing', headers })).json()).toEqual({ billed: 1 })
    for (const url of ['/ME/billing', '/me/billing/']) {
      const res = await app.inject({ url, headers })
      expect([url, res.statusCode, res.json().error]).toEqual([url, 404, 'not_found'])
    }
    expect((await app.inject({ url: '/me/tenant', headers })).statusCode).toBe(402)
    expect(billed).toBe(1)
  })

  it("answers Fastify's schema validation errors and a 403 of requirePermission in the JSON shape", async () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const auth = saikuAuth(store)
    const key = await keyFor(auth)
    const app = track(Fastify())
    app.register(auth)
    app.register(saikuErrors())
    app.get(
      '/me/search',
      { schema: { querystring: { type: 'object', required: ['q'], properties: { q: { type: 'string' } } } } },
      async () => ({ ok: true }),
    )
    app.get('/me/billing', { preHandler: requirePermission('billing:read') }, async () => ({ ok: true }))
    const headers = { authorization: `Bearer ${key}` }
    const invalid = await app.inject({ url: '/me/search', headers })
    expect([invalid.statusCode, invalid.headers['content-type'], invalid.json()]).toEqual([
      400,
      JSON_TYPE,
      { error: 'invalid_request', message: expect.any(String) },
    ])
    const forbidden = await app.inject({ url: '/me/billing', headers })
    expect([forbidden.statusCode, forbidden.json().error]).toEqual([403, 'forbidden'])
    expect(forbidden.headers['www-authenticate']).toMatch(/error="insufficient_scope".*scope="billing:read"$/)
  })

  it("reports a 5xx through the request's logger by default, and never in the body", async () => {
    const lines: string[] = []
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString())
        done()
      },
    })
    const store = new MemoryKeyStore({ tenants: [acme] })
    const auth = saikuAuth(store)
    const key = await keyFor(auth)
    const app = track(Fastify({ logger: { level: 'error', stream } }))
    app.register(auth)
    app.register(saikuErrors())
    app.get('/me/boom', async () => {
      throw new Error('database password is hunter2')
    })
    const res = await app.inject({ url: '/me/boom', headers: { authorization: `Bearer ${key}` } })
    expect([res.statusCode, res.json()]).toEqual([
      500,
      { error: 'internal_error', message: 'An unexpected error occurred.' },
    ])
    expect(res.body).not.toContain('hunter2')
    expect(lines.filter((line) => line.includes('database password is hunter2'))).toHaveLength(1)
  })

  it('answers the JSON 500 when an async onError rejects or a sync one throws', async () => {
    const emitWarning = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
    const store = new MemoryKeyStore({ tenants: [acme] })
    const auth = saikuAuth(store)
    const key = await keyFor(auth)
    for (const onError of [
      async () => {
        throw new Error('reporter down')
      },
      () => {
        throw new Error('reporter bug')
      },
    ]) {
      const app = track(Fastify())
      app.register(auth)
      app.register(saikuErrors({ onError }))
      app.get('/me/boom', async () => {
        throw new Error('database password is hunter2')
      })
      const res = await app.inject({ url: '/me/boom', headers: { authorization: `Bearer ${key}` } })
      expect([res.statusCode, res.headers['content-type'], res.json()]).toEqual([
        500,
        JSON_TYPE,
        { error: 'internal_error', message: 'An unexpected error occurred.' },
      ])
    }
    await new Promise((resolve) => setImmediate(resolve))
    expect(emitWarning.mock.calls.map(([message]) => String(message))).toEqual([
      'Saiku auth: the saikuErrors().onError hook threw or rejected, and was ignored: Error: reporter down',
      'Saiku auth: the saikuErrors().onError hook threw or rejected, and was ignored: Error: reporter bug',
    ])
  })

  it('refuses bad saikuErrors options when it is called, naming the option', () => {
    expect(() => saikuErrors({ notFound: 'yes' as never })).toThrow(
      'saikuErrors().notFound: expected a boolean, got "yes"',
    )
    expect(() => saikuAuth(new MemoryKeyStore(), { realm: 'a"b' })).toThrow(/realm/)
  })
})
