import { describe, expect, it } from 'vitest'
import { SaikuStoreError } from './errors.js'
import type { LimitDecision, LimiterBackend } from './limiter.js'
import { createMemoryLimiter } from './memory-limiter.js'
import { createRateLimiterBackend } from './rate-limiter-flexible.js'
import { createAuthenticator } from './authenticator.js'
import { MemoryKeyStore } from './store.js'

const acme = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'w',
  subscription: { status: 'active' as const },
}
const request = (key: string) => ({
  headers: { authorization: `Bearer ${key}` },
  method: 'GET',
  url: '/me/tenant',
  ip: '127.0.0.1',
})

describe('authenticator.usage', () => {
  it('reports both windows of the tenant’s tier and spends nothing, however often it is read', async () => {
    const auth = createAuthenticator(new MemoryKeyStore({ tenants: [acme] }))
    const { key } = await auth.keys.create('t-acme', { label: 'agent' })
    const fresh = await auth.usage('t-acme')
    expect(fresh).toEqual({
      tenantId: 't-acme',
      limits: { perMinute: 60, perHour: 1000 },
      minute: { window: 'minute', quota: 60, used: 0, remaining: 60, resetSeconds: 60 },
      hour: { window: 'hour', quota: 1000, used: 0, remaining: 1000, resetSeconds: 3600 },
    })
    for (let i = 0; i < 3; i++) expect((await auth.authenticate(request(key))).ok).toBe(true)
    for (let i = 0; i < 5; i++) await auth.usage('t-acme')
    const after = await auth.usage('t-acme')
    expect(after?.minute).toMatchObject({ used: 3, remaining: 57 })
    expect(after?.hour).toMatchObject({ used: 3, remaining: 997 })
    // The next request is the fourth: the reads counted nothing.
    const decision = await auth.authenticate(request(key))
    expect(decision.ok && decision.principal?.rateLimit?.minute.remaining).toBe(56)
  })

  it.each([
    ['memory, fixed windows', {}],
    ['memory, rolling windows', { windows: 'rolling' as const }],
    ['rate-limiter-flexible', { limiter: { backend: createRateLimiterBackend() } }],
  ])(
    'after a downgrade, tells both windows’ true counts, above the new quotas, with nothing remaining (%s)',
    async (_name, options) => {
      const store = new MemoryKeyStore({ tenants: [{ ...acme, limits: { perMinute: 20, perHour: 30 } }] })
      const auth = createAuthenticator(store, options)
      const { key } = await auth.keys.create('t-acme', { label: 'agent' })
      for (let i = 0; i < 8; i++) expect((await auth.authenticate(request(key))).ok).toBe(true)
      store.putTenant({ ...acme, limits: { perMinute: 3, perHour: 5 } })
      auth.invalidateTenant('t-acme')
      const usage = await auth.usage('t-acme')
      expect(usage?.limits).toEqual({ perMinute: 3, perHour: 5 })
      expect(usage?.minute).toMatchObject({ quota: 3, used: 8, remaining: 0 })
      expect(usage?.hour).toMatchObject({ quota: 5, used: 8, remaining: 0 })
      // A request after the downgrade is refused and counts nothing: the counts still read 8.
      expect((await auth.authenticate(request(key))).ok).toBe(false)
      expect((await auth.usage('t-acme'))?.minute).toMatchObject({ used: 8, remaining: 0 })
      auth.close()
    },
  )

  it('is null for an unknown tenant', async () => {
    const auth = createAuthenticator(new MemoryKeyStore({ tenants: [acme] }))
    expect(await auth.usage('t-nobody')).toBeNull()
  })

  it('gives the limits without counts when the backend cannot peek', async () => {
    const memory = createMemoryLimiter()
    const backend: LimiterBackend = { consume: (tenantKey, limits) => memory.consume(tenantKey, limits) }
    const auth = createAuthenticator(new MemoryKeyStore({ tenants: [acme] }), { limiter: { backend } })
    expect(await auth.usage('t-acme')).toEqual({
      tenantId: 't-acme',
      limits: { perMinute: 60, perHour: 1000 },
      minute: null,
      hour: null,
    })
  })

  it('rejects with a store error when the backend fails, never a made-up count', async () => {
    const backend: LimiterBackend = {
      consume: () => Promise.reject(new Error('down')),
      peek: (): Promise<LimitDecision> => Promise.reject(new Error('connection refused')),
    }
    const auth = createAuthenticator(new MemoryKeyStore({ tenants: [acme] }), { limiter: { backend } })
    await expect(auth.usage('t-acme')).rejects.toBeInstanceOf(SaikuStoreError)
  })
})

describe('the memory backend’s peek', () => {
  it('answers what peekSync answers and writes nothing', async () => {
    const limiter = createMemoryLimiter({ now: () => 1_000 })
    const limits = { perMinute: 2, perHour: 10 }
    await limiter.peek('t', limits)
    expect(limiter.trackedTenants).toBe(0)
    limiter.consumeSync('t', limits)
    limiter.consumeSync('t', limits)
    expect(await limiter.peek('t', limits)).toEqual(limiter.peekSync('t', limits))
    expect(await limiter.peek('t', limits)).toMatchObject({
      admitted: false,
      minute: { remaining: 0 },
      hour: { remaining: 8 },
    })
  })
})
