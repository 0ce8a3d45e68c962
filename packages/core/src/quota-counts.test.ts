import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { SaikuConfigError } from './errors.js'
import { createMemoryLimiter, type QuotaCountRow } from './memory-limiter.js'

// Saving a memory limiter's day and month counts and loading them into a fresh one (a restart):
// the fresh limiter decides the quotas as the first would have.

const START_MS = Date.parse('2028-02-27T22:00:00Z') // a leap February's end: day and month edges are near
const HUGE = 1_000_000

function clock(startMs = START_MS) {
  let nowMs = startMs
  return { now: () => nowMs, advance: (ms: number) => (nowMs += ms) }
}

/** What a database keeps: one row per tenant and window start, upserted with the larger count. */
function save(saved: Map<string, QuotaCountRow>, rows: readonly QuotaCountRow[]): void {
  for (const row of rows) {
    const id = `${row.tenantKey}\u0000${row.window}\u0000${row.startMs}`
    const before = saved.get(id)
    if (before === undefined || before.count < row.count) saved.set(id, row)
  }
}

describe('quotaCounts and restoreQuotaCounts', () => {
  it('a fresh limiter given the saved rows decides every later request as the first one does', () => {
    const step = fc.record({
      tenant: fc.constantFrom('a', 'b', 'c'),
      cost: fc.integer({ min: 1, max: 3 }),
      advanceMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 3 * 3_600_000 }), fc.constant(86_400_000)),
      save: fc.boolean(),
    })
    fc.assert(
      fc.property(
        fc.array(step, { maxLength: 60 }),
        fc.array(step, { maxLength: 40 }),
        fc.constantFrom(1, 15, 29, 31),
        fc.constantFrom<'fixed' | 'rolling'>('fixed', 'rolling'),
        (before, after, monthStartDay, windows) => {
          const limits = { perMinute: HUGE, perHour: HUGE, perDay: 9, perMonth: 20, monthStartDay }
          const time = clock()
          const first = createMemoryLimiter({ now: time.now, windows })
          const saved = new Map<string, QuotaCountRow>()
          for (const s of before) {
            time.advance(s.advanceMs)
            first.consumeSync(s.tenant, limits, s.cost)
            if (s.save) save(saved, first.quotaCounts())
          }
          save(saved, first.quotaCounts()) // the batch at a graceful shutdown
          const second = createMemoryLimiter({ now: time.now, windows })
          second.restoreQuotaCounts(saved.values())
          expect(second.trackedTenants).toBeLessThanOrEqual(3)
          for (const s of after) {
            time.advance(s.advanceMs)
            const a = first.consumeSync(s.tenant, limits, s.cost)
            const b = second.consumeSync(s.tenant, limits, s.cost)
            expect(b.admitted).toBe(a.admitted)
            expect(b.day).toEqual(a.day)
            expect(b.month).toEqual(a.month)
            expect(b.retryAfterMs).toBe(a.retryAfterMs)
          }
        },
      ),
      { numRuns: 300 },
    )
  })

  it('reads only the tenants counted since the last read, one row per quota the limits set', () => {
    const time = clock(Date.parse('2030-01-10T12:00:00Z'))
    const limiter = createMemoryLimiter({ now: time.now })
    const quotas = { perMinute: 100, perHour: 100, perDay: 50, perMonth: 500, monthStartDay: 15 }
    limiter.consumeSync('a', quotas, 2)
    limiter.consumeSync('b', { perMinute: 100, perHour: 100, perMonth: 500 })
    limiter.consumeSync('c', { perMinute: 100, perHour: 100 })
    expect(limiter.quotaCounts()).toEqual([
      {
        tenantKey: 'a',
        window: 'day',
        startMs: Date.parse('2030-01-10T00:00:00Z'),
        endMs: Date.parse('2030-01-11T00:00:00Z'),
        count: 2,
      },
      {
        tenantKey: 'a',
        window: 'month',
        startMs: Date.parse('2029-12-15T00:00:00Z'),
        endMs: Date.parse('2030-01-15T00:00:00Z'),
        count: 2,
      },
      {
        tenantKey: 'b',
        window: 'month',
        startMs: Date.parse('2030-01-01T00:00:00Z'),
        endMs: Date.parse('2030-02-01T00:00:00Z'),
        count: 1,
      },
    ])
    expect(limiter.quotaCounts()).toEqual([])
    limiter.consumeSync('b', { perMinute: 100, perHour: 100, perMonth: 500 })
    expect(limiter.quotaCounts()).toMatchObject([{ tenantKey: 'b', window: 'month', count: 2 }])
    // A refused request counts nothing, so there is nothing new to write.
    limiter.consumeSync('a', { ...quotas, perDay: 2 })
    expect(limiter.quotaCounts()).toEqual([])
  })

  it('skips rows of ended windows, starts no minute or hour window, and never lowers a count', () => {
    const time = clock(Date.parse('2030-01-10T12:00:00Z'))
    const limiter = createMemoryLimiter({ now: time.now })
    const limits = { perMinute: 2, perHour: 2, perDay: 100, perMonth: 100 }
    const month = { startMs: Date.parse('2030-01-01T00:00:00Z'), endMs: Date.parse('2030-02-01T00:00:00Z') }
    const lastMonth = { startMs: Date.parse('2029-12-01T00:00:00Z'), endMs: month.startMs }
    for (let i = 0; i < 2; i++) limiter.consumeSync('t', limits)
    const loaded = limiter.restoreQuotaCounts([
      { tenantKey: 't', window: 'month', ...month, count: 1 }, // lower than the 2 counted here
      { tenantKey: 'u', window: 'month', ...lastMonth, count: 99 }, // ended
      { tenantKey: 'v', window: 'month', ...month, count: 40 },
    ])
    expect(loaded).toBe(2)
    expect(limiter.trackedTenants).toBe(2)
    expect(limiter.peekSync('t', limits).month).toMatchObject({ used: 2 })
    expect(limiter.peekSync('u', limits).month).toMatchObject({ used: 0 })
    // v's month is loaded, its minute and hour are not started: two requests still fit in them.
    expect(limiter.consumeSync('v', limits)).toMatchObject({
      admitted: true,
      minute: { used: 1, resetMs: 60_000 },
      month: { used: 41 },
    })
    expect(limiter.consumeSync('v', limits)).toMatchObject({ admitted: true, month: { used: 42 } })
    // Loading the same row again (a second start, or rows this process wrote) counts nothing twice.
    limiter.restoreQuotaCounts([{ tenantKey: 'v', window: 'month', ...month, count: 40 }])
    expect(limiter.peekSync('v', limits).month).toMatchObject({ used: 42 })
  })

  it('a spent month stays spent after the restore, until the month ends', () => {
    const time = clock(Date.parse('2030-01-31T23:00:00Z'))
    const limiter = createMemoryLimiter({ now: time.now })
    const limits = { perMinute: 100, perHour: 100, perMonth: 3 }
    const month = { startMs: Date.parse('2030-01-01T00:00:00Z'), endMs: Date.parse('2030-02-01T00:00:00Z') }
    limiter.restoreQuotaCounts([{ tenantKey: 't', window: 'month', ...month, count: 3 }])
    expect(limiter.consumeSync('t', limits)).toMatchObject({ admitted: false, retryAfterMs: 3_600_000 })
    time.advance(3_600_000)
    expect(limiter.consumeSync('t', limits)).toMatchObject({ admitted: true, month: { used: 1 } })
  })

  it('a malformed row throws a SaikuConfigError naming it, and loads none', () => {
    const limiter = createMemoryLimiter({ now: () => Date.parse('2030-01-10T12:00:00Z') })
    const good = {
      tenantKey: 'a',
      window: 'month' as const,
      startMs: Date.parse('2030-01-01T00:00:00Z'),
      endMs: Date.parse('2030-02-01T00:00:00Z'),
      count: 5,
    }
    const bad: [unknown, string][] = [
      [{ ...good, count: -1 }, 'restoreQuotaCounts rows[1].count: expected a whole number from 0, got -1'],
      [{ ...good, count: 1.5 }, 'rows[1].count'],
      [{ ...good, window: 'week' }, "rows[1].window: expected 'day' or 'month'"],
      [{ ...good, tenantKey: '' }, 'rows[1].tenantKey'],
      [{ ...good, endMs: good.startMs }, 'rows[1].endMs'],
      [{ ...good, window: 'day' }, 'rows[1]: expected a UTC day'],
      [null, 'rows[1]: expected a quota count row'],
    ]
    for (const [row, message] of bad) {
      const attempt = () => limiter.restoreQuotaCounts([good, row as QuotaCountRow])
      expect(attempt).toThrow(SaikuConfigError)
      expect(attempt).toThrow(message)
      expect(limiter.trackedTenants).toBe(0)
    }
  })

  it('holds at most maxTenants changed tenants: one forgotten is left out of the rows', () => {
    const limiter = createMemoryLimiter({ maxTenants: 2, now: () => Date.parse('2030-01-10T12:00:00Z') })
    const limits = { perMinute: 10, perHour: 10, perMonth: 10 }
    for (const tenant of ['a', 'b', 'c']) limiter.consumeSync(tenant, limits)
    expect(limiter.quotaCounts().map((row) => row.tenantKey)).toEqual(['b', 'c'])
  })
})
