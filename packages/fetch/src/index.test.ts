// What only the Fetch adapter decides: the request mapped from a Fetch `Request`, the client address from the
// host or a header named for it, and the handler's `Response` carrying the fields. Everything the adapters
// share is in test/conformance.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { getRequestListener } from '@hono/node-server'
import { rawGet } from '@saiku/test-support/http'
import { afterEach, beforeEach, describe, expect, it, vi, type MockInstance } from 'vitest'
import { mintApiKey } from '@saiku/core'
import {
  MemoryKeyStore,
  SaikuHttpError,
  saikuAuth,
  withSaiku,
  type DecisionEvent,
  type SaikuFetchAuth,
  type SaikuFetchOptions,
  type TenantRecord,
} from './index.js'

const acme: TenantRecord = {
  tenantId: '00000000-0000-4000-8000-acme00000000',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'acme-warehouse',
  subscription: { status: 'active', trialEndsAt: null },
}
const JSON_TYPE = 'application/json; charset=utf-8'
const FIRST_WINDOW = '"minute";r=59;t=60, "hour";r=999;t=3600'
const AMBIGUOUS = {
  error: 'invalid_request',
  message: 'Send exactly one API key, in one Authorization header: "Authorization: Bearer <key>".',
}

const closers: (() => void)[] = []
let warnings: MockInstance<typeof process.emitWarning>
beforeEach(() => {
  warnings = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
})
afterEach(() => {
  for (const close of closers.splice(0)) close()
})

function setUp(options?: SaikuFetchOptions): { auth: SaikuFetchAuth; key: () => Promise<string> } {
  const auth = saikuAuth(new MemoryKeyStore({ tenants: [acme] }), options)
  closers.push(() => auth.authenticator.close())
  const key = async () => (await auth.authenticator.keys.create(acme.tenantId, { label: 'agent' })).key
  return { auth, key }
}

const get = (key?: string, headers: Record<string, string> = {}) =>
  new Request('http://api.test/me/tenant', {
    headers: key === undefined ? headers : { authorization: `Bearer ${key}`, ...headers },
  })

describe('@saiku/fetch: saikuAuth', () => {
  it('admits a valid key with the principal and the rate-limit fields, and refuses with a Response as it is', async () => {
    const { auth, key } = setUp()
    const admitted = await auth(get(await key()), { clientAddress: '192.0.2.1' })
    expect(admitted).toMatchObject({ ok: true, principal: { tenant: { tenantSlug: 'acme' } }, unverified: null })
    expect(admitted.ok && admitted.headers).toEqual({
      'ratelimit-policy': '"minute";q=60;w=60, "hour";q=1000;w=3600',
      ratelimit: FIRST_WINDOW,
    })
    const refused = await auth(get(), { clientAddress: '192.0.2.1' })
    expect(refused.ok).toBe(false)
    if (refused.ok) return
    expect(refused.response.status).toBe(401)
    expect(refused.response.headers.get('content-type')).toBe(JSON_TYPE)
    expect(refused.response.headers.get('www-authenticate')).toBe('Bearer realm="saiku"')
    expect(await refused.response.json()).toEqual({ error: 'unauthorized', message: 'API key missing or invalid.' })
  })

  it('answers two Authorization headers, which the Fetch API joins with a comma, with the 400', async () => {
    const { auth, key } = setUp()
    const headers = new Headers()
    headers.append('authorization', `Bearer ${await key()}`)
    headers.append('authorization', `Bearer ${mintApiKey().key}`)
    expect(headers.get('authorization')).toContain(', ')
    const result = await auth(new Request('http://api.test/me/tenant', { headers }), { clientAddress: '192.0.2.1' })
    expect(result.ok).toBe(false)
    if (result.ok) return
    expect(result.response.status).toBe(400)
    expect(await result.response.json()).toEqual(AMBIGUOUS)
    expect(result.response.headers.get('www-authenticate')).toMatch(/^Bearer realm="saiku", error="invalid_request"/)
  })

  it('answers two Authorization header lines over the wire with the 400, through a Node bridge', async () => {
    const { auth, key } = setUp()
    let handled = 0
    const handler = withSaiku(auth, () => (handled++, Response.json({ ok: true })))
    const listener = getRequestListener((request) => handler(request, undefined))
    const res = await rawGet((req, res) => void listener(req, res), '/me/tenant', [
      'Authorization',
      `Bearer ${await key()}`,
      'Authorization',
      `Bearer ${mintApiKey().key}`,
    ])
    expect(res.status).toBe(400)
    expect(JSON.parse(res.body)).toEqual(AMBIGUOUS)
    expect(handled).toBe(0)
  })

  it('counts requests without a client address as one client, and says so once', async () => {
    const { auth, key } = setUp({ failedAuth: { perMinute: 3 } })
    const valid = await key()
    expect((await auth(get(valid))).ok).toBe(true)
    for (let i = 0; i < 3; i++) {
      const result = await auth(get(mintApiKey().key))
      expect(!result.ok && result.response.status).toBe(401)
    }
    // No address to tell them apart: another address-less client is past the same budget.
    const next = await auth(get(mintApiKey().key), {})
    expect(!next.ok && next.response.status).toBe(429)
    // A client with an address of its own is not.
    const other = await auth(get(mintApiKey().key), { clientAddress: '192.0.2.9' })
    expect(!other.ok && other.response.status).toBe(401)
    // The key this process verified still works.
    expect((await auth(get(valid))).ok).toBe(true)
    const told = warnings.mock.calls.filter(
      ([, options]) => (options as { code?: string })?.code === 'SAIKU_NO_CLIENT_ADDRESS',
    )
    expect(told).toHaveLength(1)
  })

  it('under report-only authentication, counts a request let through once however often it is asked', async () => {
    const events: DecisionEvent[] = []
    const { auth } = setUp({
      reportOnly: { authentication: true },
      failedAuth: { perMinute: 2 },
      onDecision: (e) => void events.push(e),
    })
    for (let i = 0; i < 2; i++) {
      const request = get(mintApiKey().key)
      for (let call = 0; call < 2; call++)
        expect(await auth(request, { clientAddress: '192.0.2.1' })).toEqual({
          ok: true,
          principal: null,
          headers: {},
          unverified: { status: 401, code: 'unauthorized', reason: 'unknown_key' },
        })
    }
    expect(events.map((e) => [e.status, e.enforced])).toEqual([
      [401, false],
      [401, false],
    ])
  })

  it('counts an admitted request once however often it is asked, a frozen Request too', async () => {
    const events: DecisionEvent[] = []
    const { auth, key } = setUp({ onDecision: (e) => void events.push(e) })
    const token = await key()
    const requests = [get(token), Object.freeze(get(token))]
    const seen: unknown[] = []
    for (const request of requests)
      for (let call = 0; call < 3; call++) {
        const result = await auth(request, { clientAddress: '192.0.2.1' })
        expect(result.ok).toBe(true)
        if (result.ok) seen.push(result.principal?.rateLimit?.minute.remaining)
      }
    // Counted on the first call of each request; later calls hand back the same principal and count nothing.
    expect(events.map((e) => e.reason)).toEqual([
      'admitted',
      'already_admitted',
      'already_admitted',
      'admitted',
      'already_admitted',
      'already_admitted',
    ])
    expect(seen).toEqual([59, 59, 59, 58, 58, 58])
    // Nothing the adapter keeps shows on the Request as a name a caller lists or spreads.
    expect(Object.keys(requests[0]!)).toEqual([])
  })

  it('never reads X-Forwarded-For unless it is named', async () => {
    const { auth } = setUp({ failedAuth: { perMinute: 2 } })
    for (let i = 0; i < 2; i++)
      await auth(get(mintApiKey().key, { 'x-forwarded-for': `198.51.100.${i}` }), { clientAddress: '192.0.2.1' })
    const spoofed = await auth(get(mintApiKey().key, { 'x-forwarded-for': '198.51.100.77' }), {
      clientAddress: '192.0.2.1',
    })
    expect(!spoofed.ok && spoofed.response.status).toBe(429)
  })

  it('reads the client address a named header holds, the entry proxyHops from the right', async () => {
    const { auth } = setUp({ failedAuth: { perMinute: 2 }, clientAddressHeader: 'X-Forwarded-For', proxyHops: 2 })
    // The client wrote the leftmost entry; the two proxies appended 203.0.113.5 and 10.0.0.2.
    const from = (xff: string) => auth(get(mintApiKey().key, { 'x-forwarded-for': xff }), { clientAddress: '10.0.0.3' })
    for (let i = 0; i < 2; i++)
      expect(((await from(`1.1.1.${i}, 203.0.113.5, 10.0.0.2`)) as { ok: false }).ok).toBe(false)
    const same = await from('9.9.9.9, 203.0.113.5, 10.0.0.2')
    expect(!same.ok && same.response.status).toBe(429)
    // Another client, behind the same proxies: its own budget, whatever the host's address.
    const other = await from('1.1.1.1, 203.0.113.6, 10.0.0.2')
    expect(!other.ok && other.response.status).toBe(401)
  })

  it("hands hooks the request's headers as a record, read as sent and listed in full", async () => {
    const seen: unknown[] = []
    const { auth, key } = setUp({
      cost: ({ request }) => {
        seen.push(request.headers['x-units'], 'x-units' in request.headers, Object.keys(request.headers).sort())
        return Number(request.headers['x-units'] ?? 1)
      },
    })
    const result = await auth(get(await key(), { 'X-Units': '3' }), { clientAddress: '192.0.2.1' })
    expect(result.ok && result.headers.ratelimit).toBe('"minute";r=57;t=60, "hour";r=997;t=3600')
    expect(seen).toEqual(['3', true, ['authorization', 'x-units']])
  })

  it("hands hooks a header record that behaves as Node's req.headers for any name a hook reads", async () => {
    const seen: unknown[] = []
    const { auth, key } = setUp({
      cost: ({ request }) => {
        const headers = request.headers as Record<string, unknown> & { hasOwnProperty(name: string): boolean }
        seen.push(
          'x y' in headers,
          headers['x y'],
          headers['X-Units'],
          // eslint-disable-next-line no-prototype-builtins -- what a hook written for Node's req.headers may call
          headers.hasOwnProperty('x-units'),
          // eslint-disable-next-line @typescript-eslint/no-base-to-string -- the plain object's own string
          String(headers),
          `${headers['x-units'] as string}`,
        )
        return 1
      },
    })
    // A header named like an Object method shadows nothing a hook calls: Node keeps names in lower case too.
    const result = await auth(get(await key(), { 'X-Units': '3', ToString: 'x', HasOwnProperty: 'y' }), {
      clientAddress: '192.0.2.1',
    })
    expect(result.ok).toBe(true)
    expect(seen).toEqual([false, undefined, undefined, true, '[object Object]', '3'])
  })

  it('refuses a bad option at construction, naming it', () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    expect(() => saikuAuth(store, { clientAddressHeader: 'x forwarded' })).toThrow(
      'clientAddressHeader: expected a header name, such as "x-forwarded-for", got "x forwarded"',
    )
    expect(() => saikuAuth(store, { clientAddressHeader: 'x-forwarded-for', proxyHops: 0 })).toThrow(
      'proxyHops: expected a whole number of proxies from 1 to 32, got 0',
    )
    expect(() => saikuAuth(store, { proxyHops: 2 })).toThrow('proxyHops: expected no value without clientAddressHeader')
    expect(() => saikuAuth(store, { tiers: { team: { perMinute: -1, perHour: 10 } } })).toThrow(
      /tiers\.team\.perMinute/,
    )
  })
})

describe('@saiku/fetch: withSaiku', () => {
  it('sets the rate-limit fields on the handler response and counts once', async () => {
    const { auth, key } = setUp()
    const valid = await key()
    const handler = withSaiku(auth, (_request, principal) => Response.json(principal!.tenant))
    const res = await handler(get(valid), undefined)
    expect(res.status).toBe(200)
    expect(res.headers.get('ratelimit')).toBe(FIRST_WINDOW)
    expect(await res.json()).toMatchObject({ tenantSlug: 'acme' })
    expect((await handler(get(valid), undefined)).headers.get('ratelimit')).toBe(
      '"minute";r=58;t=60, "hour";r=998;t=3600',
    )
  })

  it('never calls the handler for a refused request', async () => {
    const { auth } = setUp()
    const handler = vi.fn(() => new Response('secret'))
    const res = await withSaiku(auth, handler)(get(mintApiKey().key), undefined)
    expect(res.status).toBe(401)
    expect(handler).not.toHaveBeenCalled()
  })

  it('sets the fields on an immutable response: a redirect, and a response from fetch', async () => {
    const { auth, key } = setUp()
    const valid = await key()
    const redirect = await withSaiku(auth, () => Response.redirect('http://api.test/elsewhere', 307))(
      get(valid),
      undefined,
    )
    expect(redirect.status).toBe(307)
    expect(redirect.headers.get('location')).toBe('http://api.test/elsewhere')
    expect(redirect.headers.get('ratelimit')).toBe(FIRST_WINDOW)

    const upstream = createServer((_req, res) => res.writeHead(201, { 'x-upstream': 'yes' }).end('from upstream'))
    upstream.listen(0, '127.0.0.1')
    await new Promise((resolve) => upstream.once('listening', resolve))
    closers.push(() => upstream.close())
    const { port } = upstream.address() as AddressInfo
    const fetched = await withSaiku(auth, () => fetch(`http://127.0.0.1:${port}/`))(get(valid), undefined)
    expect(fetched.status).toBe(201)
    expect(fetched.headers.get('x-upstream')).toBe('yes')
    expect(fetched.headers.get('ratelimit')).toBe('"minute";r=58;t=60, "hour";r=998;t=3600')
    expect(await fetched.text()).toBe('from upstream')
  })

  it('answers a thrown SaikuError with its JSON shape, keeping the rate-limit fields', async () => {
    const { auth, key } = setUp()
    const onError = vi.fn()
    const res = await withSaiku(
      auth,
      () => {
        throw new SaikuHttpError('not_found', 'No such project.')
      },
      { onError },
    )(get(await key()), undefined)
    expect(res.status).toBe(404)
    expect(res.headers.get('content-type')).toBe(JSON_TYPE)
    expect(await res.json()).toEqual({ error: 'not_found', message: 'No such project.' })
    expect(res.headers.get('ratelimit')).toBe(FIRST_WINDOW)
    expect(onError).not.toHaveBeenCalled()
  })

  it('answers any other error, and a handler that returns no Response, with the JSON 500 and gives it to onError', async () => {
    const { auth, key } = setUp()
    const valid = await key()
    const errors: unknown[] = []
    const options = { onError: (error: unknown) => void errors.push(error) }
    const crash = await withSaiku(
      auth,
      async () => {
        await Promise.resolve()
        throw new Error('database password is hunter2')
      },
      options,
    )(get(valid), undefined)
    expect(crash.status).toBe(500)
    const text = await crash.text()
    expect(JSON.parse(text)).toEqual({ error: 'internal_error', message: 'An unexpected error occurred.' })
    expect(text).not.toContain('hunter2')
    const nothing = await withSaiku(auth, (() => undefined) as never, options)(get(valid), undefined)
    expect(nothing.status).toBe(500)
    expect(errors.map((error) => (error as Error).message)).toEqual([
      'database password is hunter2',
      'the handler returned undefined, not a Response',
    ])
  })

  for (const [kind, onError] of [
    [
      'throws',
      () => {
        throw new Error('reporter down: throws')
      },
    ],
    [
      'rejects',
      async () => {
        await Promise.resolve()
        throw new Error('reporter down: rejects')
      },
    ],
  ] as const) {
    it(`answers the JSON 500 when onError ${kind}, with one warning per distinct message`, async () => {
      const { auth, key } = setUp()
      const valid = await key()
      const handler = withSaiku(
        auth,
        () => {
          throw new Error('boom')
        },
        { onError },
      )
      for (let i = 0; i < 3; i++) expect((await handler(get(valid), undefined)).status).toBe(500)
      const failed = () => warnings.mock.calls.filter(([message]) => String(message).includes(`reporter down: ${kind}`))
      await vi.waitFor(() => expect(failed()).toHaveLength(1), { timeout: 10_000 })
      expect(String(failed()[0]![0])).toBe(
        `Saiku auth: the withSaiku().onError hook threw or rejected, and was ignored: Error: reporter down: ${kind}`,
      )
    })
  }

  it('takes the client address from what the host passes beside the request', async () => {
    const { auth } = setUp({ failedAuth: { perMinute: 2 } })
    const handler = withSaiku(auth, () => new Response('ok'), {
      clientAddress: (_request, info: { remoteAddr: { hostname: string } }) => info.remoteAddr.hostname,
    })
    const from = (hostname: string) => handler(get(mintApiKey().key), { remoteAddr: { hostname } })
    for (let i = 0; i < 2; i++) expect((await from('192.0.2.1')).status).toBe(401)
    expect((await from('192.0.2.1')).status).toBe(429)
    expect((await from('192.0.2.2')).status).toBe(401)
  })

  it('answers a clientAddress that throws with the JSON 500, never a rejection', async () => {
    const { auth, key } = setUp()
    const errors: unknown[] = []
    const res = await withSaiku(auth, () => new Response('ok'), {
      clientAddress: () => {
        throw new Error('no socket')
      },
      onError: (error) => void errors.push(error),
    })(get(await key()), undefined)
    expect(res.status).toBe(500)
    expect(errors).toHaveLength(1)
  })

  it('answers a clientAddress that returns a promise with the JSON 500, never an unhandled rejection', async () => {
    const { auth, key } = setUp({ failedAuth: { perMinute: 2 } })
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown) => void unhandled.push(reason)
    process.on('unhandledRejection', onUnhandled)
    try {
      const errors: Error[] = []
      const faulty = [
        (async () => '198.51.100.7') as unknown as () => string,
        (async () => {
          throw new Error('rejected address')
        }) as unknown as () => string,
      ]
      const valid = await key()
      for (const clientAddress of faulty)
        for (const credential of [valid, mintApiKey().key]) {
          const res = await withSaiku(auth, () => new Response('never'), {
            clientAddress,
            onError: (error) => void errors.push(error as Error),
          })(get(credential), undefined)
          expect(res.status).toBe(500)
          expect(await res.json()).toEqual({ error: 'internal_error', message: 'An unexpected error occurred.' })
        }
      // Passed beside the request to saikuAuth itself: the same mistake, the same answer.
      const direct = await auth(get(valid), { clientAddress: Promise.reject(new Error('late')) as never }).then(
        () => 'admitted',
        (error: Error) => error.message,
      )
      expect(direct).toBe(
        'clientAddress: expected a string or undefined, returned synchronously (not a promise), got an object',
      )
      expect(errors.map((error) => error.message)).toEqual(
        Array(4).fill(
          'clientAddress: expected a string or undefined, returned synchronously (not a promise), got an object',
        ),
      )
      // A rejection is reported on the next turn of the event loop: wait one.
      await new Promise((resolve) => setTimeout(resolve, 20))
      expect(unhandled).toEqual([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })
})
