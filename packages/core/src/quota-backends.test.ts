import { afterEach, describe, expect, it } from 'vitest'
import { createAuthenticator } from './authenticator.js'
import type { ErrorResponse } from './http.js'
import type { LimitDecision, LimiterBackend } from './limiter.js'
import { createMemoryLimiter } from './memory-limiter.js'
import { MemoryKeyStore } from './store.js'
import { installFakeClock, type FakeClock } from './testing.js'
import type { SaikuOptions } from './options.js'
import { RateLimiterMemory } from 'rate-limiter-flexible'
import { acme, setUp, tiers } from './quota-test-setup.js'

// Backends that cannot count day and month quotas: refused, never a quota skipped.

let clock: FakeClock | undefined
afterEach(() => clock?.restore())

describe('a backend that cannot count quotas', () => {
  const minuteAndHour = (): LimitDecision => ({
    admitted: true,
    minute: { window: 'minute', limit: 100, remaining: 99, resetMs: 60_000 },
    hour: { window: 'hour', limit: 1_000, remaining: 999, resetMs: 3_600_000 },
    retryAfterMs: 0,
  })

  it('is a limiter failure when its decision leaves out a quota the limits set: onError, then the failure policy', async () => {
    const oldBackend: LimiterBackend = { consume: () => Promise.resolve(minuteAndHour()) }
    const closed = await setUp(acme(), { limiter: { backend: oldBackend } })
    const refused = (await closed.send()) as ErrorResponse
    expect(refused.status).toBe(503)
    expect(closed.events.at(-1)).toMatchObject({ reason: 'limiter_unavailable' })
    expect(closed.errors.map((e) => e.message)).toEqual([
      'the limiter backend cannot count quotas: the limits set perDay but its decision has no day window',
    ])
    // Open, the insurance in this process counts the quotas instead.
    const open = await setUp(acme(), {
      limiter: { backend: oldBackend, insurance: true },
      failurePolicy: { limiter: 'open' },
    })
    for (let i = 0; i < 3; i++) expect((await open.send()).ok).toBe(true)
    expect(((await open.send()) as ErrorResponse).status).toBe(429)
    expect(open.errors).toHaveLength(4)
  })

  it('fails the same when it answers synchronously, and usage says so', async () => {
    const syncBackend: LimiterBackend = {
      consume: () => Promise.resolve(minuteAndHour()),
      consumeSync: minuteAndHour,
      peek: () => Promise.resolve(minuteAndHour()),
    }
    const { send, errors, auth } = await setUp(acme(), { limiter: { backend: syncBackend } })
    expect(((await send()) as ErrorResponse).status).toBe(503)
    expect(errors[0]?.message).toContain('cannot count quotas')
    await expect(auth.usage('t-acme')).rejects.toThrow('cannot count quotas')
    // Without a peek, the quotas are there and unknown.
    const blind = await setUp(acme(), { limiter: { backend: { consume: () => Promise.resolve(minuteAndHour()) } } })
    expect(await blind.auth.usage('t-acme')).toMatchObject({ minute: null, hour: null, day: null, month: null })
  })

  it('is never asked about a tenant without quotas', async () => {
    const oldBackend: LimiterBackend = { consume: () => Promise.resolve(minuteAndHour()) }
    const { send, errors } = await setUp(acme(undefined, 'starter'), { limiter: { backend: oldBackend } })
    expect((await send()).ok).toBe(true)
    expect(errors).toEqual([])
  })

  it('rate-limiter-flexible: a tier with a quota is refused at construction, a tenant’s own quota at its request', async () => {
    const factory: NonNullable<NonNullable<SaikuOptions['limiter']>['factory']> = (o) => new RateLimiterMemory(o)
    expect(() => createAuthenticator(new MemoryKeyStore(), { tiers, limiter: { factory } })).toThrow(
      'tiers.metered.perDay: expected no perDay or perMonth with limiter.factory (rate-limiter-flexible counts windows from a first request, not calendar days and months; quotas need the memory backend or @saiku/redis), got 3',
    )
    const own = { ...acme(undefined, 'enterprise'), limits: { perMinute: 10, perHour: 100, perMonth: 1_000 } }
    const { send, errors } = await setUp(own, { tiers: {}, limiter: { factory } })
    expect(((await send()) as ErrorResponse).status).toBe(503)
    expect(errors.map((e) => e.message)).toEqual([
      'the rate-limiter-flexible backend cannot count quotas: limits set perMonth; use the memory backend or @saiku/redis',
    ])
  })

  it('counts the memory backend’s quotas when it is passed as a backend of one’s own', async () => {
    clock = installFakeClock(Date.parse('2027-01-10T12:00:00Z'))
    const { send } = await setUp(acme(), { limiter: { backend: createMemoryLimiter() } })
    for (let i = 0; i < 3; i++) expect((await send()).ok).toBe(true)
    expect(((await send()) as ErrorResponse).status).toBe(429)
  })
})
