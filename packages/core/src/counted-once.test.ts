import { RateLimiterMemory } from 'rate-limiter-flexible'
import { describe, expect, it } from 'vitest'
import { createKeyManager } from './management.js'
import { createMemoryLimiter } from './memory-limiter.js'
import type { RateLimiterFactory } from './rate-limiter-flexible.js'
import { createAuthenticator } from './authenticator.js'
import type { AuthDecision, AuthRequest } from './decision.js'
import { MemoryKeyStore } from './store.js'
import type { SaikuOptions } from './index.js'

const acme = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'w',
  subscription: { status: 'active' as const },
}

async function setup() {
  const store = new MemoryKeyStore({ tenants: [acme] })
  const { key } = await createKeyManager(store).create('t-acme', { label: 'agent' })
  return { store, key }
}

const request = (key: string, principal?: unknown): AuthRequest => ({
  headers: { authorization: `Bearer ${key}` },
  method: 'GET',
  url: '/me/tenant',
  principal,
})

/** The outer instance admits the request; the inner one sees what it left on the request. */
async function twice(
  store: MemoryKeyStore,
  key: string,
  outer: SaikuOptions,
  inner: SaikuOptions,
): Promise<[AuthDecision, AuthDecision]> {
  const first = await createAuthenticator(store, outer).authenticate(request(key))
  const second = await createAuthenticator(store, inner).authenticate(
    request(key, first.ok ? first.principal : undefined),
  )
  return [first, second]
}

const minuteRemaining = (decision: AuthDecision) =>
  decision.ok ? decision.principal?.rateLimit?.minute.remaining : undefined

describe('a request seen by two authenticators', () => {
  it('is counted once by a shared backend', async () => {
    const { store, key } = await setup()
    const backend = createMemoryLimiter()
    const [first, second] = await twice(store, key, { limiter: { backend } }, { limiter: { backend } })
    expect([minuteRemaining(first), minuteRemaining(second)]).toEqual([59, 59])
    expect(backend.peekSync('t-acme', { perMinute: 60, perHour: 1_000 }).minute.remaining).toBe(59)
  })

  it('is counted once by limiters built from one factory and prefix, and once in each of two prefixes', async () => {
    const { store, key } = await setup()
    const built: RateLimiterMemory[] = []
    const factory: RateLimiterFactory = (options) => {
      const limiter = new RateLimiterMemory(options)
      built.push(limiter)
      return limiter
    }
    const counts = async () =>
      Promise.all(built.map(async (limiter) => (await limiter.get('t-acme'))?.consumedPoints ?? 0))
    const shared = await twice(store, key, { limiter: { factory } }, { limiter: { factory } })
    expect(shared.map(minuteRemaining)).toEqual([59, 59])
    // minute and hour of the first, then of the second: the second counted nothing.
    expect(await counts()).toEqual([1, 1, 0, 0])
    built.length = 0
    const apart = await twice(
      store,
      key,
      { limiter: { factory, keyPrefix: 'a' } },
      { limiter: { factory, keyPrefix: 'b' } },
    )
    expect(apart.map(minuteRemaining)).toEqual([59, 59])
    expect(await counts()).toEqual([1, 1, 1, 1])
  })

  it('is still verified by the second: a key its store does not know gets 401', async () => {
    const { store, key } = await setup()
    const backend = createMemoryLimiter()
    const first = await createAuthenticator(store, { limiter: { backend } }).authenticate(request(key))
    const other = new MemoryKeyStore({ tenants: [acme] })
    const second = await createAuthenticator(other, { limiter: { backend } }).authenticate(
      request(key, first.ok ? first.principal : undefined),
    )
    expect(second).toMatchObject({ ok: false, status: 401 })
  })
})
