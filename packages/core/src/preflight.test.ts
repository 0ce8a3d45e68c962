import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import { createAuthenticator, type Authenticator } from './authenticator.js'
import type { AuthRequest, DecisionEvent } from './decision.js'
import { SaikuConfigError } from './errors.js'
import { createKeyManager } from './management.js'
import { createMemoryLimiter, type MemoryLimiterBackend } from './memory-limiter.js'
import { DEFAULTS, resolveOptions, type SaikuOptions } from './options.js'
import { isPreflight } from './preflight.js'
import { MemoryKeyStore } from './store.js'

const acme = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'w',
  subscription: { status: 'active' as const },
}
const STARTER = { perMinute: 60, perHour: 1_000 }

// What a browser sends before a cross-origin GET with an Authorization header.
const PREFLIGHT_HEADERS = {
  origin: 'https://app.example.test',
  'access-control-request-method': 'GET',
  'access-control-request-headers': 'authorization',
}

interface Setup {
  readonly auth: Authenticator
  readonly backend: MemoryLimiterBackend
  readonly events: DecisionEvent[]
  readonly key: string
  /** How often the client address was read: the failed-authentication budget and every report read it. */
  readonly ipReads: { count: number }
  readonly send: (method: string, headers: Record<string, string | string[]>) => ReturnType<Authenticator['check']>
}

const opened: Authenticator[] = []
afterEach(() => {
  for (const auth of opened.splice(0)) auth.close()
})

async function setup(options: SaikuOptions = {}): Promise<Setup> {
  const store = new MemoryKeyStore({ tenants: [acme] })
  const { key } = await createKeyManager(store).create('t-acme', { label: 'agent' })
  const backend = createMemoryLimiter()
  const events: DecisionEvent[] = []
  const auth = createAuthenticator(store, {
    ...options,
    limiter: { backend },
    onDecision: (event) => void events.push(event),
    onError: false,
  })
  opened.push(auth)
  const ipReads = { count: 0 }
  const send = (method: string, headers: Record<string, string | string[]>) => {
    const request: AuthRequest = {
      headers,
      method,
      url: '/me/tenant',
      ip: () => (ipReads.count++, '203.0.113.7'),
    }
    return auth.check(request)
  }
  return { auth, backend, events, key, ipReads, send }
}

const minuteUsed = (backend: MemoryLimiterBackend): number =>
  STARTER.perMinute - backend.peekSync('t-acme', STARTER).minute.remaining

describe("preflight: 'pass'", () => {
  it('lets a true preflight through without a principal, a count, a report or a look at the client address', async () => {
    const { backend, events, ipReads, send } = await setup({ preflight: 'pass' })
    for (let i = 0; i < 5; i++) {
      const decision = await send('OPTIONS', PREFLIGHT_HEADERS)
      expect(decision).toEqual({ ok: true, passed: 'preflight', principal: null, headers: {} })
    }
    expect(minuteUsed(backend)).toBe(0)
    expect(events).toEqual([])
    expect(ipReads.count).toBe(0)
  })

  it('authenticates an OPTIONS without Origin or Access-Control-Request-Method: 401, reported', async () => {
    const { events, send } = await setup({ preflight: 'pass' })
    const cases: Record<string, string>[] = [
      {},
      { origin: PREFLIGHT_HEADERS.origin },
      { 'access-control-request-method': 'GET' },
      { origin: '', 'access-control-request-method': 'GET' },
      { origin: PREFLIGHT_HEADERS.origin, 'access-control-request-method': '' },
    ]
    for (const headers of cases) expect(await send('OPTIONS', headers)).toMatchObject({ ok: false, status: 401 })
    expect(events.map((event) => [event.method, event.status, event.reason])).toEqual(
      cases.map(() => ['OPTIONS', 401, 'missing_credentials']),
    )
  })

  it('authenticates a preflight that carries an Authorization header, as any request: counted when the key is good', async () => {
    const { backend, events, key, send } = await setup({ preflight: 'pass' })
    const admitted = await send('OPTIONS', { ...PREFLIGHT_HEADERS, authorization: `Bearer ${key}` })
    expect(admitted).toMatchObject({ ok: true, principal: { tenant: { tenantSlug: 'acme' } } })
    expect(minuteUsed(backend)).toBe(1)
    const refused = await send('OPTIONS', { ...PREFLIGHT_HEADERS, authorization: 'Bearer not-a-key' })
    expect(refused).toMatchObject({ ok: false, status: 401 })
    expect(events.map((event) => [event.status, event.reason])).toEqual([
      [200, 'admitted'],
      [401, 'malformed'],
    ])
  })

  it('authenticates other methods that carry the preflight headers, and an "options" in lower case', async () => {
    const { events, send } = await setup({ preflight: 'pass' })
    for (const method of ['GET', 'POST', 'options'])
      expect(await send(method, PREFLIGHT_HEADERS)).toMatchObject({ ok: false, status: 401 })
    expect(events).toHaveLength(3)
  })

  it('passes a preflight whatever report-only authentication would have said, without marking it unverified', async () => {
    const { send } = await setup({ preflight: 'pass', reportOnly: { authentication: true } })
    expect(await send('OPTIONS', PREFLIGHT_HEADERS)).toEqual({
      ok: true,
      passed: 'preflight',
      principal: null,
      headers: {},
    })
  })
})

describe("preflight: 'authenticate' (the default)", () => {
  it('answers a true preflight 401 and reports it, as any request without credentials', async () => {
    const { events, send } = await setup()
    expect(await send('OPTIONS', PREFLIGHT_HEADERS)).toMatchObject({ ok: false, status: 401 })
    expect(events.map((event) => [event.method, event.status, event.reason])).toEqual([
      ['OPTIONS', 401, 'missing_credentials'],
    ])
  })

  it('is the default in DEFAULTS and in the resolved options', () => {
    expect(DEFAULTS.preflight).toBe('authenticate')
    expect(resolveOptions().preflight).toBe('authenticate')
    expect(resolveOptions({ preflight: 'pass' }).preflight).toBe('pass')
  })
})

describe('the preflight option at construction', () => {
  it.each([
    ['skip', 'preflight: expected one of "authenticate", "pass", got "skip"'],
    [true, 'preflight: expected one of "authenticate", "pass", got true'],
    ['PASS', 'preflight: expected one of "authenticate", "pass", got "PASS"'],
  ])('refuses %j with a precise message', (value, message) => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const build = () => createAuthenticator(store, { preflight: value as never })
    expect(build).toThrow(SaikuConfigError)
    expect(build).toThrow(message)
  })
})

describe('isPreflight', () => {
  // The model: a browser's preflight is exactly OPTIONS, a non-empty Origin and
  // Access-Control-Request-Method, and no Authorization header.
  const header = fc.option(fc.oneof(fc.constant(''), fc.string({ minLength: 1, maxLength: 8 })), { nil: undefined })
  it('agrees with the model for any method and any mix of the headers', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('OPTIONS', 'options', 'Options', 'GET', 'POST', 'DELETE'),
        header,
        header,
        header,
        (method, origin, requestMethod, authorization) => {
          const headers: Record<string, string> = {}
          if (origin !== undefined) headers.origin = origin
          if (requestMethod !== undefined) headers['access-control-request-method'] = requestMethod
          if (authorization !== undefined) headers.authorization = authorization
          const expected =
            method === 'OPTIONS' && Boolean(origin) && Boolean(requestMethod) && authorization === undefined
          expect(isPreflight({ method, headers, url: '/' })).toBe(expected)
        },
      ),
    )
  })
})
