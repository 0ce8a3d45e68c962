import { describe, expect, it } from 'vitest'
import { createMemoryLimiter } from './memory-limiter.js'

function clock(start = Date.parse('2030-01-01T00:00:00Z')) {
  let now = start
  return { now: () => now, set: (ms: number) => (now = start + ms) }
}

describe('createMemoryLimiter', () => {
  it('admits exactly the limit, however the calls interleave', async () => {
    const limiter = createMemoryLimiter()
    const decisions = await Promise.all(
      Array.from({ length: 250 }, () => limiter.consume('t', { perMinute: 100, perHour: 1_000 })),
    )
    expect(decisions.filter((d) => d.admitted)).toHaveLength(100)
  })

  it('writes nothing for a refused request: neither window moves', () => {
    const time = clock()
    const limiter = createMemoryLimiter({ now: time.now })
    const limits = { perMinute: 2, perHour: 5 }
    for (let i = 0; i < 2; i++) limiter.consumeSync('t', limits)
    for (let i = 0; i < 50; i++)
      expect(limiter.consumeSync('t', limits)).toMatchObject({
        admitted: false,
        hour: { remaining: 3 },
        retryAfterMs: 60_000,
      })
    time.set(60_000)
    expect(limiter.consumeSync('t', limits)).toMatchObject({
      admitted: true,
      minute: { remaining: 1 },
      hour: { remaining: 2 },
    })
  })

  it('points Retry-After at the later of two spent windows', () => {
    const time = clock()
    const limiter = createMemoryLimiter({ now: time.now })
    const limits = { perMinute: 3, perHour: 6 }
    for (let i = 0; i < 3; i++) limiter.consumeSync('t', limits)
    time.set(61_000)
    for (let i = 0; i < 3; i++) limiter.consumeSync('t', limits)
    time.set(70_000)
    const refused = limiter.consumeSync('t', limits)
    expect(refused).toMatchObject({
      admitted: false,
      minute: { remaining: 0, resetMs: 51_000 },
      hour: { remaining: 0, resetMs: 3_530_000 },
    })
    expect(refused.retryAfterMs).toBe(3_530_000)
  })

  it('keeps the counts when the clock steps back, until the clock reaches the windows’ ends again', () => {
    const time = clock()
    const limiter = createMemoryLimiter({ now: time.now })
    const limits = { perMinute: 2, perHour: 10 }
    for (let i = 0; i < 2; i++) limiter.consumeSync('t', limits)
    // Even a 1 ms step back used to open fresh windows.
    time.set(-1)
    expect(limiter.consumeSync('t', limits)).toMatchObject({
      admitted: false,
      minute: { remaining: 0, resetMs: 60_001 },
      retryAfterMs: 60_001,
    })
    time.set(-3_600_000)
    const stepped = limiter.consumeSync('t', limits)
    expect(stepped).toMatchObject({
      admitted: false,
      hour: { remaining: 8, resetMs: 7_200_000 },
      retryAfterMs: 3_660_000,
    })
    time.set(59_999)
    expect(limiter.consumeSync('t', limits).admitted).toBe(false)
    time.set(60_000)
    expect(limiter.consumeSync('t', limits)).toMatchObject({
      admitted: true,
      minute: { remaining: 1 },
      hour: { remaining: 7 },
    })
  })

  it('keeps at most maxTenants, forgetting the tenant seen least recently first', () => {
    const time = clock()
    const limiter = createMemoryLimiter({ maxTenants: 1_000, now: time.now })
    for (let i = 0; i < 50_000; i++) {
      time.set(i)
      limiter.consumeSync(`tenant-${i}`, { perMinute: 5, perHour: 50 })
    }
    expect(limiter.trackedTenants).toBe(1_000)
    // The newest tenant keeps its count; the first was forgotten.
    expect(limiter.consumeSync('tenant-49999', { perMinute: 5, perHour: 50 }).minute.remaining).toBe(3)
    expect(limiter.consumeSync('tenant-0', { perMinute: 5, perHour: 50 }).minute.remaining).toBe(4)
  })

  it('refuses a bad bound at construction', () => {
    expect(() => createMemoryLimiter({ maxTenants: 0 })).toThrow(
      'limiter.maxTenants: expected a positive integer, got 0',
    )
  })
})
