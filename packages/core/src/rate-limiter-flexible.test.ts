import { RateLimiterMemory } from 'rate-limiter-flexible'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import {
  createRateLimiterBackend,
  type RateLimiterFactory,
  type RateLimiterFactoryOptions,
} from './rate-limiter-flexible.js'

const T0 = Date.parse('2030-01-01T00:00:00Z')

describe('createRateLimiterBackend', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(T0)
  })
  afterEach(() => vi.useRealTimers())

  it('admits exactly the limit under concurrency, and reports what is left', async () => {
    const backend = createRateLimiterBackend()
    const decisions = await Promise.all(
      Array.from({ length: 250 }, () => backend.consume('t', { perMinute: 100, perHour: 1_000 })),
    )
    expect(decisions.filter((d) => d.admitted)).toHaveLength(100)
    expect(
      decisions
        .filter((d) => d.admitted)
        .map((d) => d.minute.remaining)
        .sort((a, b) => a - b),
    ).toEqual(Array.from({ length: 100 }, (_, i) => i))
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
    const limits = { perMinute: 3, perHour: 4 }
    for (let i = 0; i < 3; i++) await backend.consume('t', limits)
    vi.setSystemTime(T0 + 60_000)
    expect((await backend.consume('t', limits)).admitted).toBe(true)
    vi.setSystemTime(T0 + 90_000)
    // The minute admits (2 of 3) but the hour is spent: refused by the hour.
    const refused = await backend.consume('t', limits)
    expect(refused.admitted).toBe(false)
    expect(refused.hour.remaining).toBe(0)
    expect(refused.minute.remaining).toBe(2)
    expect(refused.retryAfterMs).toBe(3_510_000)
    // Both points were given back: the minute still has 2, the hour still 0 used beyond its 4.
    const probe = await backend.consume('t', { perMinute: 3, perHour: 100 })
    expect(probe.minute.remaining).toBe(1)
    expect(probe.hour.remaining).toBe(95)
  })

  it('never gives a point back into the next window (no window opens at -1), when two processes race', async () => {
    // One store shared by two processes; the loser's give-back lands after the minute it was meant for has ended.
    const shared = new Map<number, RateLimiterMemory>()
    const slow: RateLimiterFactory = (options) => {
      let limiter = shared.get(options.duration)
      if (limiter === undefined) {
        limiter = new RateLimiterMemory(options)
        const reward = limiter.reward.bind(limiter)
        limiter.reward = (key, points) => {
          vi.setSystemTime(Date.now() + 1_000)
          return reward(key, points)
        }
        shared.set(options.duration, limiter)
      }
      return limiter
    }
    const [a, b] = [
      createRateLimiterBackend({ factory: slow, giveBackMarginMs: 1_000 }),
      createRateLimiterBackend({ factory: slow, giveBackMarginMs: 1_000 }),
    ]
    const limits = { perMinute: 2, perHour: 100 }
    await a.consume('t', limits)
    vi.setSystemTime(T0 + 59_500)
    const raced = await Promise.all([a.consume('t', limits), b.consume('t', limits)])
    expect(raced.map((d) => d.admitted).sort()).toEqual([false, true])
    vi.setSystemTime(T0 + 61_000)
    const next = await Promise.all(Array.from({ length: 5 }, () => a.consume('t', limits)))
    expect(next.filter((d) => d.admitted)).toHaveLength(2)
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

  it('fails at once beyond maxPendingCalls instead of queueing behind a stalled store', async () => {
    const stalled = () => ({ consume: () => new Promise(() => {}), reward: vi.fn(), get: () => Promise.resolve(null) })
    const backend = createRateLimiterBackend({ factory: stalled as never, maxPendingCalls: 2 })
    const limits = { perMinute: 5, perHour: 10 }
    void backend.consume('a', limits)
    void backend.consume('b', limits)
    await expect(backend.consume('c', limits)).rejects.toMatchObject({
      name: 'SaikuStoreError',
      source: 'limiter',
      message: '2 rate limiter calls already pending',
    })
  })

  it('reports a failing backend as a SaikuStoreError from the limiter', async () => {
    const broken = () => ({ consume: () => Promise.reject(new Error('READONLY')), reward: vi.fn(), get: vi.fn() })
    const backend = createRateLimiterBackend({ factory: broken as never })
    await expect(backend.consume('t', { perMinute: 1, perHour: 1 })).rejects.toMatchObject({
      name: 'SaikuStoreError',
      source: 'limiter',
    })
  })
})
