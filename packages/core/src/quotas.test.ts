import { afterEach, describe, expect, it } from 'vitest'
import type { ErrorResponse } from './http.js'
import { installFakeClock, type FakeClock } from './testing.js'
import { acme, setUp } from './quota-test-setup.js'

// Day and month quotas through the authenticator: limits, anchors, headers, refusals, usage.

let clock: FakeClock | undefined
afterEach(() => clock?.restore())

const bodyOf = (decision: unknown) => JSON.parse((decision as ErrorResponse).body) as unknown

describe('a monthly quota on the billing anchor', () => {
  it('admits the month’s quota, then 429s naming the quota and its reset, with every window in the headers', async () => {
    clock = installFakeClock(Date.parse('2027-01-10T12:00:00Z'))
    // Anchored on November 15th: this period runs December 15th to January 15th (31 days).
    const { send } = await setUp(acme(new Date('2026-11-15T09:30:00Z')))
    const first = await send()
    expect(first).toMatchObject({
      ok: true,
      headers: {
        'ratelimit-policy': '"minute";q=3;w=60, "hour";q=3;w=3600, "day";q=3;w=86400, "month";q=3;w=2678400',
        ratelimit: `"minute";r=2;t=60, "hour";r=2;t=3600, "day";r=2;t=43200, "month";r=2;t=${4.5 * 86_400}`,
      },
    })
    expect((await send()).ok).toBe(true)
    expect((await send()).ok).toBe(true)
    const refused = (await send()) as ErrorResponse
    expect(refused.status).toBe(429)
    expect(refused.headers['retry-after']).toBe(String(4.5 * 86_400))
    expect(refused.headers['ratelimit']).toContain('"month";r=0;t=388800')
    expect(bodyOf(refused)).toEqual({
      error: 'rate_limited',
      message: 'Monthly quota of 3 requests used; it resets at 2027-01-15T00:00:00Z.',
    })
    clock.set(Date.parse('2027-01-14T23:59:59Z'))
    expect((await send()).ok).toBe(false)
    clock.set(Date.parse('2027-01-15T00:00:00Z'))
    // The next period, January 15th to February 15th: 31 days again.
    expect(await send()).toMatchObject({
      ok: true,
      headers: { 'ratelimit-policy': expect.stringContaining('"month";q=3;w=2678400') as unknown },
    })
  })

  it('runs calendar months in UTC without an anchor, and tells February’s length in the policy', async () => {
    clock = installFakeClock(Date.parse('2028-02-10T00:00:00Z'))
    const { send } = await setUp(acme())
    expect(await send()).toMatchObject({
      headers: { 'ratelimit-policy': expect.stringContaining('"month";q=3;w=2505600') as unknown },
    })
    for (let i = 0; i < 2; i++) await send()
    expect(bodyOf(await send())).toMatchObject({
      message: 'Monthly quota of 3 requests used; it resets at 2028-03-01T00:00:00Z.',
    })
  })

  it('ends a period anchored on the 31st on February’s last day, and the next on March 31st', async () => {
    clock = installFakeClock(Date.parse('2027-02-20T00:00:00Z'))
    const { send } = await setUp(acme(new Date('2026-10-31T00:00:00Z')))
    for (let i = 0; i < 3; i++) expect((await send()).ok).toBe(true)
    expect(bodyOf(await send())).toMatchObject({
      message: 'Monthly quota of 3 requests used; it resets at 2027-02-28T00:00:00Z.',
    })
    clock.set(Date.parse('2027-02-28T00:00:00Z'))
    expect(await send()).toMatchObject({
      ok: true,
      headers: { 'ratelimit-policy': expect.stringContaining(`"month";q=3;w=${31 * 86_400}`) as unknown },
    })
  })

  it('takes a new anchor or tier on the next request, keeping what the month counted', async () => {
    clock = installFakeClock(Date.parse('2027-01-10T12:00:00Z'))
    const { store, auth, send } = await setUp(acme(new Date('2026-11-15T00:00:00Z')))
    for (let i = 0; i < 3; i++) await send()
    expect((await send()).ok).toBe(false)
    // An upgrade: the new quota applies at once, the count stands.
    store.putTenant(acme(new Date('2026-11-15T00:00:00Z'), 'bigger'))
    auth.invalidateTenant('t-acme')
    expect(await send()).toMatchObject({
      ok: true,
      headers: { ratelimit: expect.stringContaining('"month";r=1;') as unknown },
    })
    // A new anchor (the 20th): the period counted in runs to its end, then the new one holds the clock.
    store.putTenant(acme(new Date('2026-12-20T00:00:00Z'), 'bigger'))
    auth.invalidateTenant('t-acme')
    clock.set(Date.parse('2027-01-16T00:00:00Z'))
    const moved = await send()
    expect(moved).toMatchObject({
      ok: true,
      headers: {
        // December 20th to January 20th, 31 days; 4 days left.
        'ratelimit-policy': expect.stringContaining(`"month";q=5;w=${31 * 86_400}`) as unknown,
        ratelimit: expect.stringContaining(`"month";r=4;t=${4 * 86_400}`) as unknown,
      },
    })
  })

  it('refuses a day’s quota spent with the day’s message, and a cost above the day’s quota counting nothing', async () => {
    clock = installFakeClock(Date.parse('2027-01-10T18:00:00Z'))
    const costs = [1, 1, 1]
    const { send, auth } = await setUp(acme(undefined, 'daily'), { cost: () => costs.shift() ?? 5_000 })
    expect((await send()).ok).toBe(true)
    expect((await send()).ok).toBe(true)
    const refused = (await send()) as ErrorResponse
    expect(refused.headers['retry-after']).toBe(String(6 * 3_600))
    expect(bodyOf(refused)).toEqual({
      error: 'rate_limited',
      message: 'Daily quota of 2 requests used; it resets at 2027-01-11T00:00:00Z.',
    })
    clock.set(Date.parse('2027-01-11T00:00:00Z'))
    const tooCostly = (await send()) as ErrorResponse
    expect(tooCostly.status).toBe(429)
    expect(bodyOf(tooCostly)).toMatchObject({ error: 'rate_limited' })
    expect(tooCostly.headers['retry-after']).toBeUndefined()
    expect(await auth.usage('t-acme')).toMatchObject({ day: { used: 0, remaining: 2 }, minute: { used: 0 } })
  })

  it('sends the legacy headers of every window the limits set', async () => {
    clock = installFakeClock(Date.parse('2027-01-10T12:00:00Z'))
    const { send } = await setUp(acme(), { rateLimitHeaders: 'legacy' })
    expect((await send()).headers).toMatchObject({
      'x-ratelimit-limit-day': '3',
      'x-ratelimit-remaining-day': '2',
      'x-ratelimit-limit-month': '3',
      'x-ratelimit-remaining-month': '2',
      // The window with least left.
      'x-ratelimit-reset': String(21.5 * 86_400),
    })
  })

  it('reports a month spent under report-only limits as the 429 it would be, lets it through and counts nothing more', async () => {
    clock = installFakeClock(Date.parse('2027-01-10T12:00:00Z'))
    const { send, events, auth } = await setUp(acme(), { reportOnly: { limits: true } })
    for (let i = 0; i < 3; i++) expect((await send()).ok).toBe(true)
    events.length = 0
    expect(await send()).toMatchObject({
      ok: true,
      headers: { ratelimit: expect.stringContaining('"month";r=0') as unknown },
    })
    expect(events.map((e) => `${e.status} ${e.reason} ${e.enforced}`)).toEqual(['429 rate_limited false'])
    expect(await auth.usage('t-acme')).toMatchObject({ month: { used: 3, remaining: 0 }, minute: { used: 3 } })
  })

  it('shows the day and month in usage, with the true count after a downgrade', async () => {
    clock = installFakeClock(Date.parse('2027-01-10T12:00:00Z'))
    const { store, auth, send } = await setUp(acme(undefined, 'bigger'))
    for (let i = 0; i < 5; i++) await send()
    store.putTenant(acme(undefined, 'metered'))
    auth.invalidateTenant('t-acme')
    expect(await auth.usage('t-acme')).toMatchObject({
      day: { window: 'day', quota: 3, used: 5, remaining: 0, resetSeconds: 12 * 3_600 },
      month: { window: 'month', quota: 3, used: 5, remaining: 0, resetSeconds: 21.5 * 86_400 },
    })
    expect((await send()).ok).toBe(false)
  })
})
