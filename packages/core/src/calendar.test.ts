import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { billingPeriodAt, DAY_MS, dayWindowAt, monthWindowAt } from './calendar.js'
import { SaikuConfigError } from './errors.js'

const at = (iso: string) => Date.parse(iso)
const window = (start: string, end: string) => ({ startMs: at(start), endMs: at(end) })

describe('calendar windows', () => {
  it('a day is the UTC day', () => {
    expect(dayWindowAt(at('2026-12-05T23:59:59.999Z'))).toEqual(window('2026-12-05T00:00Z', '2026-12-06T00:00Z'))
    expect(dayWindowAt(at('2026-12-06T00:00:00.000Z'))).toEqual(window('2026-12-06T00:00Z', '2026-12-07T00:00Z'))
  })

  it('a month starts on its anchor day, or on the last day of a shorter month', () => {
    expect(monthWindowAt(1, at('2026-02-14T12:00Z'))).toEqual(window('2026-02-01T00:00Z', '2026-03-01T00:00Z'))
    expect(monthWindowAt(31, at('2026-02-14T12:00Z'))).toEqual(window('2026-01-31T00:00Z', '2026-02-28T00:00Z'))
    expect(monthWindowAt(31, at('2026-02-28T00:00Z'))).toEqual(window('2026-02-28T00:00Z', '2026-03-31T00:00Z'))
    expect(monthWindowAt(31, at('2028-02-28T23:59Z'))).toEqual(window('2028-01-31T00:00Z', '2028-02-29T00:00Z'))
    expect(monthWindowAt(29, at('2028-02-29T00:00Z'))).toEqual(window('2028-02-29T00:00Z', '2028-03-29T00:00Z'))
    expect(monthWindowAt(30, at('2026-04-30T00:00Z'))).toEqual(window('2026-04-30T00:00Z', '2026-05-30T00:00Z'))
    expect(monthWindowAt(15, at('2026-12-31T00:00Z'))).toEqual(window('2026-12-15T00:00Z', '2027-01-15T00:00Z'))
    expect(monthWindowAt(15, at('2027-01-14T23:59:59.999Z'))).toEqual(window('2026-12-15T00:00Z', '2027-01-15T00:00Z'))
  })

  it('a billing period follows the anchor’s UTC day; the calendar month without one', () => {
    const anchor = new Date('2025-08-31T17:45:00Z')
    expect(billingPeriodAt(anchor, at('2026-09-30T10:00Z'))).toEqual(window('2026-09-30T00:00Z', '2026-10-31T00:00Z'))
    expect(billingPeriodAt(null, at('2026-09-30T10:00Z'))).toEqual(window('2026-09-01T00:00Z', '2026-10-01T00:00Z'))
  })

  it('every instant lies in exactly one month window of 28 to 31 days, next to the one after it', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 31 }),
        fc.integer({ min: Date.UTC(1970, 1, 1), max: Date.UTC(2400, 0, 1) }),
        (startDay, nowMs) => {
          const month = monthWindowAt(startDay, nowMs)
          expect(month.startMs).toBeLessThanOrEqual(nowMs)
          expect(nowMs).toBeLessThan(month.endMs)
          const days = (month.endMs - month.startMs) / DAY_MS
          expect(days).toBeGreaterThanOrEqual(28)
          expect(days).toBeLessThanOrEqual(31)
          expect(monthWindowAt(startDay, month.endMs).startMs).toBe(month.endMs)
          expect(monthWindowAt(startDay, month.startMs - 1).endMs).toBe(month.startMs)
          const startDate = new Date(month.startMs).getUTCDate()
          const lastDay = new Date(
            Date.UTC(new Date(month.startMs).getUTCFullYear(), new Date(month.startMs).getUTCMonth() + 1, 0),
          ).getUTCDate()
          expect(startDate).toBe(Math.min(startDay, lastDay))
        },
      ),
      { numRuns: 2_000 },
    )
  })

  it('refuses a start day outside 1–31 with a precise error', () => {
    for (const bad of [0, 32, 1.5, Number.NaN]) expect(() => monthWindowAt(bad, 0)).toThrow(SaikuConfigError)
  })
})
