import { SaikuConfigError } from './errors.js'

// The calendar windows of quotas. Day and month are always calendar windows in UTC, even when
// minute and hour roll: what a plan sells is a day or a month, and its edge must be a date a
// user can read, the same in every process and every backend.

export const DAY_MS = 86_400_000

/** A window of the calendar: from `startMs` (included) to `endMs` (excluded), ms since the epoch. */
export interface CalendarWindow {
  readonly startMs: number
  readonly endMs: number
}

/** The UTC day that holds `nowMs`. */
export function dayWindowAt(nowMs: number): CalendarWindow {
  const startMs = Math.floor(nowMs / DAY_MS) * DAY_MS
  return { startMs, endMs: startMs + DAY_MS }
}

/** 00:00 UTC of day `day` of month `month` (0–11) of `year`, or of the month's last day when it is shorter. */
function anchoredDayMs(year: number, month: number, day: number): number {
  const lastDay = new Date(Date.UTC(year, month + 1, 0)).getUTCDate()
  return Date.UTC(year, month, Math.min(day, lastDay))
}

/**
 * The month window that holds `nowMs`: it starts at 00:00 UTC on day `startDay` (1–31) of a
 * month, or on the month's last day when that month is shorter (an anchor on the 31st starts
 * February's period on the 28th or 29th and March's on the 31st), and ends where the next starts.
 * `startDay` 1 gives calendar months.
 */
export function monthWindowAt(startDay: number, nowMs: number): CalendarWindow {
  if (!Number.isInteger(startDay) || startDay < 1 || startDay > 31) {
    throw new SaikuConfigError('monthStartDay', 'a whole number from 1 to 31', startDay)
  }
  const now = new Date(nowMs)
  const year = now.getUTCFullYear()
  const month = now.getUTCMonth()
  const thisMonth = anchoredDayMs(year, month, startDay)
  if (nowMs >= thisMonth) return { startMs: thisMonth, endMs: anchoredDayMs(year, month + 1, startDay) }
  return { startMs: anchoredDayMs(year, month - 1, startDay), endMs: thisMonth }
}

/** The day of the month a billing anchor starts each period on: its UTC day; 1 without an anchor. */
export function monthStartDayOf(billingAnchor: Date | null | undefined): number {
  return billingAnchor == null ? 1 : billingAnchor.getUTCDate()
}

/**
 * The billing period that holds `nowMs` for a subscription anchored on `billingAnchor`
 * (periods start on its UTC day of each month, see {@link monthWindowAt}); the calendar
 * month in UTC without one.
 */
export function billingPeriodAt(billingAnchor: Date | null | undefined, nowMs: number): CalendarWindow {
  return monthWindowAt(monthStartDayOf(billingAnchor), nowMs)
}
