import { RateLimiterMemory } from 'rate-limiter-flexible'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { LimiterModel } from '@saiku/test-support/limiter-model'
import { assertMatchesModel, T0, type LimiterSubject } from '@saiku/test-support/limiter-properties'
import { createRateLimiterBackend, type RateLimiterFactory } from './rate-limiter-flexible.js'

function adapterSubject(): LimiterSubject {
  const backend = createRateLimiterBackend()
  return {
    setNow: (ms) => vi.setSystemTime(ms),
    consume: (key, limits, cost) => backend.consume(key, limits, cost),
    peek: (key, limits) => backend.peek!(key, limits),
  }
}

describe('the rate-limiter-flexible adapter against the reference model', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(T0)
  })
  afterEach(() => vi.useRealTimers())

  it('decides every random sequence as the model does: edges, tier changes, refusals, steps back, peeks', async () => {
    await assertMatchesModel(adapterSubject, { numRuns: 600, tenants: 2 })
  })

  it('takes a request’s cost from both windows or nothing, as the model does (random costs, some above a window)', async () => {
    await assertMatchesModel(adapterSubject, { numRuns: 300, tenants: 2, costs: true })
  })

  it('admits at most twice a window’s limit in any interval of its length', async () => {
    await assertMatchesModel(adapterSubject, {
      numRuns: 300,
      tenants: 1,
      tiers: { min: 1, max: 1 },
      stepsBack: false,
      checkBound: true,
      maxSteps: 60,
    })
  })

  it('starts no minute window for a request the hour refuses', async () => {
    const backend = createRateLimiterBackend()
    expect((await backend.consume('t', { perMinute: 1, perHour: 1 })).admitted).toBe(true)
    vi.setSystemTime(T0 + 60_000)
    expect((await backend.consume('t', { perMinute: 1, perHour: 1 })).admitted).toBe(false)
    vi.setSystemTime(T0 + 100_000)
    expect(await backend.consume('t', { perMinute: 1, perHour: 100 })).toMatchObject({
      admitted: true,
      minute: { resetMs: 60_000 },
    })
    vi.setSystemTime(T0 + 120_000)
    expect(await backend.consume('t', { perMinute: 1, perHour: 100 })).toMatchObject({
      admitted: false,
      retryAfterMs: 40_000,
    })
  })

  it('gives the minute point back when the hour call fails', async () => {
    let hourFails = false
    const flaky: RateLimiterFactory = (options) => {
      const limiter = new RateLimiterMemory(options)
      if (options.duration === 3600) {
        const consume = limiter.consume.bind(limiter)
        limiter.consume = (key, points) => (hourFails ? Promise.reject(new Error('ECONNRESET')) : consume(key, points))
      }
      return limiter
    }
    const backend = createRateLimiterBackend({ factory: flaky })
    const limits = { perMinute: 3, perHour: 100 }
    hourFails = true
    for (let i = 0; i < 3; i++)
      await expect(backend.consume('t', limits)).rejects.toMatchObject({ name: 'SaikuStoreError', source: 'limiter' })
    hourFails = false
    expect(await backend.consume('t', limits)).toMatchObject({
      admitted: true,
      minute: { remaining: 2 },
      hour: { remaining: 99 },
    })
  })

  it('reports under concurrency exactly what the model reports for the same calls in order', async () => {
    const limits = { perMinute: 3, perHour: 4 }
    for (let trial = 0; trial < 200; trial++) {
      const backend = createRateLimiterBackend()
      const model = new LimiterModel()
      vi.setSystemTime(T0)
      const before = trial % 4
      for (let i = 0; i < before; i++)
        expect((await backend.consume('t', limits)).admitted).toBe(model.consume('t', limits, T0).admitted)
      const at = T0 + 60_000 + (trial % 7)
      vi.setSystemTime(at)
      const decisions = await Promise.all(Array.from({ length: 6 }, () => backend.consume('t', limits)))
      for (const decision of decisions) expect(decision).toEqual(model.consume('t', limits, at))
    }
  })

  it('writes nothing on a peek', async () => {
    const backend = createRateLimiterBackend()
    vi.setSystemTime(T0)
    await backend.consume('t', { perMinute: 2, perHour: 5 })
    vi.setSystemTime(T0 + 70_000)
    for (let i = 0; i < 5; i++)
      expect(await backend.peek!('t', { perMinute: 2, perHour: 5 })).toMatchObject({
        admitted: true,
        minute: { remaining: 2, resetMs: 60_000 },
        hour: { remaining: 4 },
      })
    vi.setSystemTime(T0 + 80_000)
    expect((await backend.consume('t', { perMinute: 2, perHour: 5 })).minute).toMatchObject({
      remaining: 1,
      resetMs: 60_000,
    })
  })
})
