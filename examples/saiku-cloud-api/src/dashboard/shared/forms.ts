import express from 'express'

/** The body of a dashboard form: small, flat, and a few fields. */
export const form = express.urlencoded({ extended: false, limit: '8kb', parameterLimit: 20 })

/** A day as YYYY-MM-DD, at 00:00 UTC; null unless it names a day of the calendar (never 2027-02-31). */
export function calendarDate(value: string): Date | null {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value)) return null
  const date = new Date(`${value}T00:00:00Z`)
  // Date rolls an impossible day over into the next month; only a day that reads back the same is real.
  return !Number.isNaN(date.getTime()) && date.toISOString().slice(0, 10) === value ? date : null
}
