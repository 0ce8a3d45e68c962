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

describe('the memory backend’s day and month quotas', () => {
  const at = (iso: string) => Date.parse(iso)
  const onClock = (start: string, windows: 'fixed' | 'rolling' = 'fixed') => {
    let now = at(start)
    const limiter = createMemoryLimiter({ now: () => now, windows })
    return { limiter, set: (iso: string) => (now = at(iso)) }
  }
  const big = { perMinute: 1_000, perHour: 10_000 }

  for (const windows of ['fixed', 'rolling'] as const) {
    it(`starts a month anchored on the 31st on February’s last day, leap year or not (${windows})`, () => {
      for (const [year, lastDay] of [
        [2028, 29],
        [2027, 28],
      ] as const) {
        const { limiter, set } = onClock(`${year}-02-${lastDay - 1}T12:00:00Z`, windows)
        const limits = { ...big, perMonth: 2, monthStartDay: 31 }
        expect(limiter.consumeSync('t', limits, 2)).toMatchObject({
          admitted: true,
          month: { window: 'month', limit: 2, remaining: 0, used: 2, resetMs: 12 * 3_600_000 },
        })
        set(`${year}-02-${lastDay - 1}T23:59:59.999Z`)
        expect(limiter.consumeSync('t', limits)).toMatchObject({ admitted: false, retryAfterMs: 1 })
        set(`${year}-02-${lastDay}T00:00:00Z`)
        // The period that starts on February's last day runs to March 31st.
        const march31 = Date.UTC(year, 2, 31) - Date.UTC(year, 1, lastDay)
        expect(limiter.consumeSync('t', limits)).toMatchObject({
          admitted: true,
          month: { remaining: 1, used: 1, resetMs: march31 },
        })
      }
    })
  }

  it('keeps the day’s and month’s counts when the clock steps back across their start', () => {
    const { limiter, set } = onClock('2030-05-01T00:00:00.500Z')
    const limits = { ...big, perDay: 3, perMonth: 5 }
    expect(limiter.consumeSync('t', limits, 3).admitted).toBe(true)
    set('2030-04-30T23:59:59Z')
    // Back in April's last day: May 1st's count stands until its end, nothing new opens.
    expect(limiter.consumeSync('t', limits)).toMatchObject({
      admitted: false,
      day: { used: 3, remaining: 0, resetMs: 86_401_000 },
      month: { used: 3, remaining: 2 },
      retryAfterMs: 86_401_000,
    })
    set('2030-05-02T00:00:00Z')
    expect(limiter.consumeSync('t', limits)).toMatchObject({ admitted: true, day: { used: 1 }, month: { used: 4 } })
  })

  it('starts over when the clock jumps a month ahead', () => {
    const { limiter, set } = onClock('2030-01-15T10:00:00Z')
    const limits = { ...big, perDay: 2, perMonth: 2, monthStartDay: 15 }
    expect(limiter.consumeSync('t', limits, 2).admitted).toBe(true)
    expect(limiter.consumeSync('t', limits).admitted).toBe(false)
    set('2030-02-15T00:00:00Z')
    expect(limiter.consumeSync('t', limits)).toMatchObject({
      admitted: true,
      day: { used: 1, resetMs: 86_400_000 },
      month: { used: 1, resetMs: 28 * 86_400_000 },
    })
  })

  it('refuses a cost above the day’s quota, counting nothing in any window', () => {
    const { limiter } = onClock('2030-01-15T10:00:00Z')
    const limits = { perMinute: 50, perHour: 50, perDay: 10, perMonth: 100 }
    expect(limiter.consumeSync('t', limits, 11)).toMatchObject({
      admitted: false,
      minute: { used: 0 },
      day: { used: 0, remaining: 10 },
      month: { used: 0 },
      retryAfterMs: 14 * 3_600_000,
    })
    expect(limiter.consumeSync('t', limits, 10)).toMatchObject({ admitted: true, minute: { used: 10 } })
  })

  it('reports a quota lowered under its count as used above the limit, nothing left', () => {
    const { limiter } = onClock('2030-01-15T10:00:00Z')
    expect(limiter.consumeSync('t', { ...big, perMonth: 5_000 }, 900).admitted).toBe(true)
    const downgraded = { perMinute: 100, perHour: 500, perMonth: 500 }
    expect(limiter.consumeSync('t', downgraded)).toMatchObject({
      admitted: false,
      month: { limit: 500, used: 900, remaining: 0 },
    })
    expect(limiter.peekSync('t', downgraded)).toMatchObject({ month: { used: 900, remaining: 0 } })
  })

  it('counts a month without a day, and reports only the quotas the limits set', () => {
    const { limiter } = onClock('2030-01-15T10:00:00Z')
    const decision = limiter.consumeSync('t', { ...big, perMonth: 3 })
    expect(decision.month).toMatchObject({ used: 1, remaining: 2 })
    expect('day' in decision).toBe(false)
    const plain = limiter.consumeSync('t', big)
    expect('day' in plain || 'month' in plain).toBe(false)
    // Set again, the month finds what it counted.
    expect(limiter.peekSync('t', { ...big, perMonth: 3 }).month).toMatchObject({ used: 1 })
  })

  it('keeps the month counted in until its end when the anchor moves mid-month, then follows the new anchor', () => {
    const { limiter, set } = onClock('2030-03-20T10:00:00Z')
    expect(limiter.consumeSync('t', { ...big, perMonth: 10, monthStartDay: 1 }, 4).admitted).toBe(true)
    const moved = { ...big, perMonth: 10, monthStartDay: 25 }
    set('2030-03-26T00:00:00Z')
    // March's count runs to April 1st, whatever the new anchor says.
    expect(limiter.consumeSync('t', moved)).toMatchObject({ month: { used: 5, resetMs: 6 * 86_400_000 } })
    set('2030-04-01T00:00:00Z')
    // Then the period that holds the clock under the new anchor: March 25th to April 25th.
    expect(limiter.consumeSync('t', moved)).toMatchObject({ month: { used: 1, resetMs: 24 * 86_400_000 } })
  })

  it('counts and takes back the quotas through hitSync and unhitSync', () => {
    const { limiter } = onClock('2030-01-15T10:00:00Z')
    const limits = { ...big, perDay: 2 }
    expect(limiter.hitSync('t', limits)).toBe(0)
    expect(limiter.hitSync('t', limits)).toBe(0)
    expect(limiter.hitSync('t', limits)).toBe(14 * 3_600_000)
    limiter.unhitSync('t')
    expect(limiter.peekSync('t', limits).day).toMatchObject({ used: 1 })
  })
})
