import { RateLimiterMemory } from 'rate-limiter-flexible'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createRateLimiterBackend, type RateLimiterFactoryOptions } from './limiter.js'

const T0 = Date.parse('2030-01-01T00:00:00Z')

describe('createRateLimiterBackend', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(T0)
  })
  afterEach(() => vi.useRealTimers())

  it('admits exactly the limit under concurrency, and reports what is left', async () => {
    const backend = createRateLimiterBackend()
    const decisions = await Promise.all(Array.from({ length: 250 }, () => backend.consume('t', { perMinute: 100, perHour: 1_000 })))
    expect(decisions.filter((d) => d.admitted)).toHaveLength(100)
    expect(decisions.filter((d) => d.admitted).map((d) => d.minute.remaining).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 100 }, (_, i) => i),
    )
  })

  it('leaves the hour untouched when the minute refuses', async () => {
    const backend = createRateLimiterBackend()
    const limits = { perMinute: 2, perHour: 10 }
    for (let i = 0; i < 2; i++) expect((await backend.consume('t', limits)).admitted).toBe(true)
    for (let i = 0; i < 20; i++) {
      const refused = await backend.consume('t', limits)
      expect(refused.admitted).toBe(false)
      expect(refused.hour.remaining).toBe(8)
      expect(refused.retryAfterMs).toBe(60_000)
    }
    vi.setSystemTime(T0 + 60_000)
    expect((await backend.consume('t', limits)).hour.remaining).toBe(7)
  })

  it('gives the minute back when the hour refuses, and points Retry-After at the hour', async () => {
    const backend = createRateLimiterBackend()
    const limits = { perMinute: 5, perHour: 5 }
    for (let i = 0; i < 5; i++) await backend.consume('t', limits)
    vi.setSystemTime(T0 + 30_000)
    const refused = await backend.consume('t', limits)
    expect(refused.admitted).toBe(false)
    expect(refused.retryAfterMs).toBe(3_570_000)
    vi.setSystemTime(T0 + 60_000)
    // The minute was reset, and the refused request above took nothing from it.
    const again = await backend.consume('t', { perMinute: 5, perHour: 100 })
    expect(again.minute.remaining).toBe(4)
  })

  it('applies new limits to the same counts (a tier change resets nothing)', async () => {
    const backend = createRateLimiterBackend()
    for (let i = 0; i < 10; i++) await backend.consume('t', { perMinute: 10, perHour: 100 })
    expect((await backend.consume('t', { perMinute: 10, perHour: 100 })).admitted).toBe(false)
    const upgraded = await backend.consume('t', { perMinute: 50, perHour: 500 })
    expect(upgraded.admitted).toBe(true)
    expect(upgraded.minute.remaining).toBe(39)
  })

  it('counts tenants apart', async () => {
    const backend = createRateLimiterBackend()
    await backend.consume('a', { perMinute: 1, perHour: 10 })
    expect((await backend.consume('a', { perMinute: 1, perHour: 10 })).admitted).toBe(false)
    expect((await backend.consume('b', { perMinute: 1, perHour: 10 })).admitted).toBe(true)
  })

  it('builds one limiter per window through the factory, with prefixed keys', async () => {
    const built: RateLimiterFactoryOptions[] = []
    const backend = createRateLimiterBackend({
      keyPrefix: 'app',
      factory: (options) => {
        built.push(options)
        return new RateLimiterMemory(options)
      },
    })
    expect(built.map((o) => [o.keyPrefix, o.duration])).toEqual([
      ['app:minute', 60],
      ['app:hour', 3600],
    ])
    expect((await backend.consume('t', { perMinute: 1, perHour: 1 })).admitted).toBe(true)
  })

  it('refuses a factory that does not build a limiter', () => {
    expect(() => createRateLimiterBackend({ factory: () => ({}) as never })).toThrow(
      'limiter.factory (minute): expected a rate-limiter-flexible limiter, got an object',
    )
  })

  it('reports a failing backend as a SaikuStoreError from the limiter', async () => {
    const broken = () => ({ consume: () => Promise.reject(new Error('READONLY')), reward: vi.fn(), get: vi.fn() })
    const backend = createRateLimiterBackend({ factory: broken as never })
    await expect(backend.consume('t', { perMinute: 1, perHour: 1 })).rejects.toMatchObject({ name: 'SaikuStoreError', source: 'limiter' })
  })
})
