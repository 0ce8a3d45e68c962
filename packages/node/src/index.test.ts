// What only the node:http adapter decides: its return value, a second call on one request, where the client
// address comes from, and its error writer and wrapper. Everything the adapters share is in test/conformance.
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http'
import request from 'supertest'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { mintApiKey } from '@saiku/core'
import {
  MemoryKeyStore,
  requirePermission,
  saikuAuth,
  saikuErrors,
  saikuUnverified,
  SaikuHttpError,
  withSaiku,
  type DecisionEvent,
  type SaikuNodeAuth,
  type TenantRecord,
} from './index.js'

const acme: TenantRecord = {
  tenantId: '00000000-0000-4000-8000-acme00000000',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'acme-warehouse',
  subscription: { status: 'active', trialEndsAt: null },
}
const UNAUTHORIZED = { error: 'unauthorized', message: 'API key missing or invalid.' }
const INTERNAL = { error: 'internal_error', message: 'An unexpected error occurred.' }

const closers: (() => void)[] = []
afterEach(() => {
  for (const close of closers.splice(0)) close()
})

/** An async listener, its promise left to the test's own assertions. */
function listen(handle: (req: IncomingMessage, res: ServerResponse) => Promise<void>): RequestListener {
  return (req, res) => void handle(req, res)
}

function track(auth: SaikuNodeAuth): SaikuNodeAuth {
  closers.push(() => auth.authenticator.close())
  return auth
}

async function keyFor(auth: SaikuNodeAuth, permissions: string[] = []): Promise<string> {
  return (await auth.authenticator.keys.create(acme.tenantId, { label: 'agent', permissions })).key
}

describe('@saiku/node saikuAuth', () => {
  it('resolves to the principal with the RateLimit fields set, or to undefined with the refusal written', async () => {
    const auth = track(saikuAuth(new MemoryKeyStore({ tenants: [acme] })))
    const key = await keyFor(auth)
    const seen: unknown[] = []
    const app = listen(async (req, res) => {
      const principal = await auth(req, res)
      seen.push(principal === undefined ? 'answered' : principal?.tenant.tenantSlug)
      if (principal === undefined) return
      res.setHeader('x-ratelimit-set-before', String(res.hasHeader('ratelimit')))
      res.end('ok')
    })
    const admitted = await request(app).get('/me/tenant').set('Authorization', `Bearer ${key}`)
    expect(admitted.status).toBe(200)
    expect(admitted.text).toBe('ok')
    expect(admitted.headers['x-ratelimit-set-before']).toBe('true')
    expect(admitted.headers['ratelimit']).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
    const refused = await request(app).get('/me/tenant')
    expect(refused.status).toBe(401)
    expect(refused.body).toEqual(UNAUTHORIZED)
    expect(refused.headers['www-authenticate']).toBe('Bearer realm="saiku"')
    expect(seen).toEqual(['acme', 'answered'])
  })

  it('answers a refused request once: a second call neither writes again nor counts it again', async () => {
    const events: DecisionEvent[] = []
    const auth = track(saikuAuth(new MemoryKeyStore({ tenants: [acme] }), { onDecision: (e) => void events.push(e) }))
    const results: unknown[] = []
    const app = listen(async (req, res) => {
      results.push(await auth(req, res), await auth(req, res))
    })
    const res = await request(app).get('/me/tenant').set('Authorization', `Bearer ${mintApiKey().key}`)
    expect(res.status).toBe(401)
    expect(res.body).toEqual(UNAUTHORIZED)
    expect(results).toEqual([undefined, undefined])
    expect(events).toHaveLength(1)
  })

  it('under report-only authentication, counts a request let through once however often it is called', async () => {
    const events: DecisionEvent[] = []
    const auth = track(
      saikuAuth(new MemoryKeyStore({ tenants: [acme] }), {
        reportOnly: { authentication: true },
        failedAuth: { perMinute: 2 },
        onDecision: (e) => void events.push(e),
      }),
    )
    const results: unknown[] = []
    const app = listen(async (req, res) => {
      results.push(await auth(req, res), await auth(req, res))
      res.end()
    })
    for (let i = 0; i < 2; i++) {
      const res = await request(app).get('/me/tenant').set('Authorization', `Bearer ${mintApiKey().key}`)
      expect(res.status).toBe(200)
    }
    expect(results).toEqual([null, null, null, null])
    // Two requests, two failures: within the budget of two, so neither would have been a 429.
    expect(events.map((e) => [e.status, e.enforced])).toEqual([
      [401, false],
      [401, false],
    ])
  })

  it('takes the client address from the socket, never a header, unless clientAddress names it', async () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const seen: (string | undefined)[] = []
    const record = (e: DecisionEvent) => void seen.push(e.ip)
    const bySocket = track(saikuAuth(store, { onDecision: record }))
    const byProxy = track(
      saikuAuth(store, {
        onDecision: record,
        clientAddress: (req) => String(req.headers['x-forwarded-for']).split(',').at(-1)!.trim(),
      }),
    )
    for (const auth of [bySocket, byProxy]) {
      const res = await request(listen(async (req, res) => void (await auth(req, res))))
        .get('/me/tenant')
        .set('X-Forwarded-For', '203.0.113.9, 198.51.100.7')
      expect(res.status).toBe(401)
    }
    expect(seen).toHaveLength(2)
    expect(seen[0]).toMatch(/^(::ffff:)?127\.0\.0\.1$|^::1$/)
    expect(seen[1]).toBe('198.51.100.7')
  })

  it('reads clientAddressHeader proxyHops from the right, and the socket when that entry is no address', async () => {
    const seen: (string | undefined)[] = []
    const auth = track(
      saikuAuth(new MemoryKeyStore(), {
        clientAddressHeader: 'X-Client-Chain',
        proxyHops: 2,
        onDecision: (e) => void seen.push(e.ip),
      }),
    )
    const app = listen(async (req, res) => void (await auth(req, res)))
    for (const chain of ['6.6.6.6, 203.0.113.5, 10.0.0.2', '203.0.113.9', 'unknown, 10.0.0.2'])
      await request(app).get('/me/tenant').set('X-Client-Chain', chain)
    await request(app).get('/me/tenant')
    expect(seen.slice(0, 2)).toEqual(['203.0.113.5', '203.0.113.9'])
    for (const fallback of seen.slice(2)) expect(fallback).toMatch(/^(::ffff:)?127\.0\.0\.1$|^::1$/)
    expect(seen).toHaveLength(4)
  })

  it('takes the address one way: a header, or a function, never both', () => {
    const store = new MemoryKeyStore()
    expect(() =>
      saikuAuth(store, { clientAddressHeader: 'x-forwarded-for', clientAddress: (req) => req.socket.remoteAddress }),
    ).toThrow(/^clientAddress: expected no function beside clientAddressHeader, got /)
    expect(() => saikuAuth(store, { proxyHops: 2 })).toThrow('proxyHops: expected no value without clientAddressHeader')
    expect(() => saikuAuth(store, { clientAddressHeader: 'x forwarded' })).toThrow(/^clientAddressHeader: /)
  })

  it('answers a clientAddress that throws or returns a promise with the JSON 500, reported to onError', async () => {
    const errors: Error[] = []
    const faulty = [
      () => {
        throw new Error('address parser bug')
      },
      (async () => '198.51.100.7') as unknown as () => string,
      (async () => {
        throw new Error('rejected address')
      }) as unknown as () => string,
    ]
    for (const clientAddress of faulty) {
      const auth = track(saikuAuth(new MemoryKeyStore(), { clientAddress, onError: (e) => void errors.push(e) }))
      const res = await request(withSaiku(auth, (_req, res) => res.end('never')))
        .get('/me/tenant')
        .set('Authorization', 'Bearer garbage')
      expect(res.status).toBe(500)
      expect(res.body).toEqual(INTERNAL)
    }
    expect(errors.map((e) => e.message)).toEqual([
      'address parser bug',
      'clientAddress(req): expected a string or undefined, returned synchronously (not a promise), got an object',
      'clientAddress(req): expected a string or undefined, returned synchronously (not a promise), got an object',
    ])
  })

  it('answers a thrown value that throws when read with the JSON 500, never a hang or an unhandled rejection', async () => {
    const errors: unknown[] = []
    const trap = () => {
      throw new Error('trap')
    }
    const hostile = new Proxy(new Error('hostile'), { get: trap, has: trap, ownKeys: trap, getPrototypeOf: trap })
    const auth = track(saikuAuth(new MemoryKeyStore({ tenants: [acme] })))
    const { key } = await auth.authenticator.keys.create(acme.tenantId, { label: 'agent' })
    const listener = withSaiku(
      auth,
      () => {
        throw hostile
      },
      { onError: (error) => void errors.push(error) },
    )
    const res = await request(listener).get('/me/tenant').set('Authorization', `Bearer ${key}`).timeout(10_000)
    expect(res.status).toBe(500)
    expect(res.body).toEqual(INTERNAL)
    expect(errors.length).toBe(1)
    expect(errors[0] === hostile).toBe(true)
  })

  it('checks its options when it is built, clientAddress included, and leaves the caller’s object as it was', () => {
    const store = new MemoryKeyStore()
    expect(() => saikuAuth(store, { clientAddress: 'x-forwarded-for' as never })).toThrow(
      'clientAddress: expected a function (req) => string | undefined, got "x-forwarded-for"',
    )
    expect(() => saikuAuth(store, { clientAddress: () => undefined, realm: 'bad realm"' })).toThrow(/^realm: /)
    expect(() => saikuAuth(store, null as never)).toThrow('options: expected an object, got null')
    const options = Object.freeze({ clientAddress: () => undefined, realm: 'api' })
    track(saikuAuth(store, options))
    expect(Object.keys(options)).toEqual(['clientAddress', 'realm'])
  })

  it('under report-only authentication, resolves to null and tells the refusal it would have sent', async () => {
    const auth = track(saikuAuth(new MemoryKeyStore({ tenants: [acme] }), { reportOnly: { authentication: true } }))
    const app = withSaiku(auth, (req, res, principal) => {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ principal, unverified: saikuUnverified(req) ?? null }))
    })
    const res = await request(app).get('/me/tenant').set('Authorization', 'Bearer garbage')
    expect(res.status).toBe(200)
    expect(res.body).toEqual({
      principal: null,
      unverified: { status: 401, code: 'unauthorized', reason: 'malformed' },
    })
  })
})

describe('@saiku/node requirePermission', () => {
  it('passes a key that holds the permission, and writes the 403 or the 401 otherwise', async () => {
    const auth = track(saikuAuth(new MemoryKeyStore({ tenants: [acme] })))
    const canRead = requirePermission('keys:read', { realm: 'api' })
    const app = withSaiku(auth, (_req, res, principal) => {
      if (canRead(principal, res)) res.end('listed')
    })
    const allowed = await request(app)
      .get('/me/api-keys')
      .set('Authorization', `Bearer ${await keyFor(auth, ['keys:*'])}`)
    expect(allowed.text).toBe('listed')
    const denied = await request(app)
      .get('/me/api-keys')
      .set('Authorization', `Bearer ${await keyFor(auth)}`)
    expect(denied.status).toBe(403)
    expect(denied.body).toEqual({ error: 'forbidden', message: 'This API key lacks the permission keys:read.' })
    expect(denied.headers['www-authenticate']).toContain('error="insufficient_scope"')
    const anonymous = await request(listen(async (_req, res) => void canRead(null, res))).get('/')
    expect(anonymous.status).toBe(401)
    expect(anonymous.headers['www-authenticate']).toBe('Bearer realm="api"')
  })

  it('checks the permissions when it is built', () => {
    expect(() => requirePermission()).toThrow(/^requirePermission/)
  })
})

describe('@saiku/node withSaiku and saikuErrors', () => {
  it('answers what the handler throws or rejects with in the JSON shape, a 500 reported once to onError', async () => {
    const auth = track(saikuAuth(new MemoryKeyStore({ tenants: [acme] })))
    const key = await keyFor(auth)
    const reported: unknown[] = []
    const app = withSaiku(
      auth,
      async (req) => {
        if (req.url === '/gone') throw new SaikuHttpError('not_found')
        if (req.url === '/sync') throw new Error('sync password=hunter2')
        await Promise.resolve()
        throw new Error('async password=hunter2')
      },
      { onError: async (error) => void reported.push(error) },
    )
    const gone = await request(app).get('/gone').set('Authorization', `Bearer ${key}`)
    expect(gone.status).toBe(404)
    expect(gone.body).toEqual({ error: 'not_found', message: 'Resource does not exist.' })
    for (const path of ['/sync', '/async']) {
      const res = await request(app).get(path).set('Authorization', `Bearer ${key}`)
      expect(res.status).toBe(500)
      expect(res.body).toEqual(INTERNAL)
      expect(res.text).not.toContain('hunter2')
    }
    expect(reported.map((e) => (e as Error).message)).toEqual(['sync password=hunter2', 'async password=hunter2'])
  })

  it('keeps the JSON 500 when onError rejects: one process warning', async () => {
    const auth = track(saikuAuth(new MemoryKeyStore({ tenants: [acme] })))
    const key = await keyFor(auth)
    const warnings = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
    const id = mintApiKey().keyId
    const app = withSaiku(
      auth,
      () => {
        throw new Error('handler bug')
      },
      { onError: async () => Promise.reject(new Error(`reporter down ${id}`)) },
    )
    for (let i = 0; i < 2; i++)
      expect((await request(app).get('/').set('Authorization', `Bearer ${key}`)).body).toEqual(INTERNAL)
    await vi.waitFor(() => expect(warnings).toHaveBeenCalledTimes(1), { timeout: 10_000 })
    expect(String(warnings.mock.calls[0]![0])).toContain(`reporter down ${id}`)
  })

  it('refuses a notFound option and a withSaiku without saikuAuth or handler, when built', () => {
    expect(() => saikuErrors({ notFound: false } as never)).toThrow(
      /^saikuErrors\(\)\.notFound: expected no such option/,
    )
    expect(() => saikuErrors({ onError: 'log' as never })).toThrow('saikuErrors().onError: expected a function')
    const auth = track(saikuAuth(new MemoryKeyStore()))
    expect(() => withSaiku((() => undefined) as never, () => undefined)).toThrow(
      /^withSaiku\(auth\): expected what saikuAuth/,
    )
    expect(() => withSaiku(auth, undefined as never)).toThrow('withSaiku(handler): expected a function, got undefined')
  })
})
