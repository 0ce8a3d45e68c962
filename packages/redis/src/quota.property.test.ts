import { randomUUID } from 'node:crypto'
import fc from 'fast-check'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LimiterModel, RollingLimiterModel } from '@saiku/test-support/limiter-model'
import { hasRedisServerBinary, ownRedis, redisUrl, type OwnRedis } from '@saiku/test-support/services'
import { dayWindowAt, monthWindowAt, type LimitDecision, type WindowLimits } from '@saiku/core'
import { createRedisLimiter, createRedisLimiterAt } from './limiter.js'
import { assertTurnsMatchModel, newTally, turnScenarioArb } from './model-turns.js'

// The quotas (perDay, perMonth) of the Redis scripts against the reference model, with the time injected:
// every field of every decision must be the model's, across leap and common Februaries, 30- and 31-day
// month ends, anchors on the 29th to 31st, and a clock that steps back and forward across the edges.

const at = (iso: string): number => Date.parse(iso)

/** Starting points just before the edges that matter. */
const STARTS = [
  '2028-02-28T23:59:58.000Z', // leap February: the 29th exists
  '2027-02-28T23:59:58.000Z', // common February
  '2100-02-28T23:59:58.000Z', // a century that is not a leap year
  '2000-02-29T23:59:58.000Z', // a century that is
  '2026-04-30T23:59:58.000Z', // a 30-day month ends
  '2026-01-31T23:59:58.000Z', // a 31-day month ends
  '2026-12-31T23:59:58.000Z', // the year ends
  '2028-03-30T23:59:59.000Z',
].map(at)

type Step =
  | { kind: 'consume'; tenant: number; tier: number; cost: number }
  | { kind: 'peek'; tenant: number; tier: number }
  | { kind: 'tick'; ms: number }
  | { kind: 'edge'; tenant: number; tier: number; which: number; offsetMs: number }
  | { kind: 'back'; ms: number }
  | { kind: 'burst'; tenant: number; tier: number; times: number }

const DAY = 86_400_000
/** Any ms from `from` to `to` (fc.integer stops at 2^31). */
const msBetween = (from: number, to: number): fc.Arbitrary<number> =>
  fc
    .tuple(fc.integer({ min: 0, max: Math.floor((to - from) / 60_000) }), fc.integer({ min: 0, max: 59_999 }))
    .map(([minutes, ms]) => Math.min(to, from + minutes * 60_000 + ms))
// Quotas are drawn apart from the minute and hour (the core's ordering checks are not the script's):
// quotas under the hour's limit, as a plan lowered under a tenant's count leaves them, bind often.
const limitsArb: fc.Arbitrary<WindowLimits> = fc
  .record({
    perMinute: fc.integer({ min: 1, max: 6 }),
    hourExtra: fc.integer({ min: 0, max: 10 }),
    perDay: fc.option(fc.integer({ min: 1, max: 15 }), { nil: undefined }),
    perMonth: fc.option(fc.integer({ min: 1, max: 25 }), { nil: undefined }),
    monthStartDay: fc.option(
      fc.oneof(fc.constantFrom(29, 30, 31), fc.constantFrom(29, 30, 31), fc.integer({ min: 1, max: 28 })),
      { nil: undefined },
    ),
  })
  .map(({ perMinute, hourExtra, perDay, perMonth, monthStartDay }) => {
    const limits: { -readonly [K in keyof WindowLimits]: WindowLimits[K] } = {
      perMinute,
      perHour: perMinute + hourExtra,
    }
    if (perDay !== undefined) limits.perDay = perDay
    if (perMonth !== undefined) limits.perMonth = perMonth
    if (monthStartDay !== undefined) limits.monthStartDay = monthStartDay
    return limits
  })

const stepArb = (tenants: number, tiers: number): fc.Arbitrary<Step> => {
  const tenant = fc.integer({ min: 0, max: tenants - 1 })
  const tier = fc.integer({ min: 0, max: tiers - 1 })
  return fc.oneof(
    { weight: 8, arbitrary: fc.record({ kind: fc.constant('consume' as const), tenant, tier, cost: fc.constant(1) }) },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('consume' as const),
        tenant,
        tier,
        cost: fc.integer({ min: 1, max: 30 }),
      }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('peek' as const), tenant, tier }) },
    // Requests an hour apart: the minute and the hour start over each time, so the quotas bind.
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('burst' as const),
        tenant,
        tier,
        times: fc.integer({ min: 2, max: 12 }),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('tick' as const),
        ms: fc.oneof(
          fc.integer({ min: 0, max: 3_000 }),
          fc.integer({ min: 50_000, max: 4_000_000 }),
          fc.constantFrom(DAY, 28 * DAY, 29 * DAY, 30 * DAY, 31 * DAY),
          msBetween(DAY, 40 * DAY),
        ),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('edge' as const),
        tenant,
        tier,
        which: fc.integer({ min: 0, max: 1 }),
        offsetMs: fc.constantFrom(-1, 0, 1, -1_000),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('back' as const),
        ms: fc.oneof(
          fc.integer({ min: 1, max: 5_000 }),
          fc.constantFrom(DAY, 28 * DAY, 30 * DAY, 31 * DAY),
          msBetween(1, 35 * DAY),
        ),
      }),
    },
  )
}

const scenarioArb = fc.record({
  // Minute and hour scaled to 1 s and 10 s half the time, so that they start over often within a day.
  lengths: fc.constantFrom({}, { minuteMs: 1_000, hourMs: 10_000 }),
  start: fc.oneof(fc.constantFrom(...STARTS), msBetween(at('1999-12-01'), at('2101-01-01'))),
  tiers: fc.array(limitsArb, { minLength: 1, maxLength: 3 }),
  steps: fc.array(stepArb(2, 3), { minLength: 1, maxLength: 50 }),
})

describe.skipIf(redisUrl === undefined)('the Redis quotas against the reference model, time injected', () => {
  let client: Redis
  beforeAll(async () => {
    client = new Redis(redisUrl!, { enableOfflineQueue: true, maxRetriesPerRequest: 1 })
    await client.ping()
  })
  afterAll(() => client.disconnect())

  async function clean(keyPrefix: string): Promise<void> {
    const keys = await client.keys(`${keyPrefix}:*`)
    if (keys.length > 0) await client.del(...keys)
  }

  for (const windows of ['fixed', 'rolling'] as const)
    it(`decides every random sequence as the model does, every field (${windows} minute and hour)`, async () => {
      // Refusals that only a quota made: the runs must reach them, or the test says nothing of the quotas.
      let quotaRefusals = 0
      await fc.assert(
        fc.asyncProperty(scenarioArb, async ({ lengths, start, tiers, steps }) => {
          let now = start
          const keyPrefix = `quota-prop-${randomUUID()}`
          const limiter = createRedisLimiterAt({ client, keyPrefix, now: () => now, windows, ...lengths })
          const model = windows === 'fixed' ? new LimiterModel(lengths) : new RollingLimiterModel(lengths)
          const limitsOf = (tier: number) => tiers[tier % tiers.length]!
          try {
            for (const step of steps) {
              if (step.kind === 'tick') now += step.ms
              else if (step.kind === 'back') now -= step.ms
              else if (step.kind === 'edge') {
                const ends = model.quotaEnds(`t${step.tenant}`, limitsOf(step.tier), now)
                if (ends.length > 0) now = ends[step.which % ends.length]! + step.offsetMs
              } else {
                const tenant = `t${step.tenant}`
                const limits = limitsOf(step.tier)
                const times = step.kind === 'burst' ? step.times : 1
                for (let i = 0; i < times; i++) {
                  if (i > 0) now += (lengths.hourMs ?? 3_600_000) + 1
                  const [got, want]: [LimitDecision, LimitDecision] =
                    step.kind === 'peek'
                      ? [await limiter.peek(tenant, limits), model.peek(tenant, limits, now)]
                      : [
                          await limiter.consume(tenant, limits, step.kind === 'consume' ? step.cost : 1),
                          model.consume(tenant, limits, now, step.kind === 'consume' ? step.cost : 1),
                        ]
                  expect(got, `${step.kind} at ${new Date(now).toISOString()} ${JSON.stringify(limits)}`).toStrictEqual(
                    want,
                  )
                  const roomy = (w: { remaining: number } | undefined) => w === undefined || w.remaining >= 1
                  if (
                    !want.admitted &&
                    roomy(want.minute) &&
                    roomy(want.hour) &&
                    !(roomy(want.day) && roomy(want.month))
                  )
                    quotaRefusals++
                }
              }
            }
          } finally {
            await clean(keyPrefix)
          }
        }),
        { numRuns: 200 },
      )
      expect(quotaRefusals).toBeGreaterThan(100)
    })

  for (const windows of ['fixed', 'rolling'] as const)
    it(`decides one turn's decisions in one batch across every window, in arrival order, as the model does (${windows})`, async () => {
      const tally = newTally()
      const scenarios = turnScenarioArb(limitsArb, {
        start: fc.oneof(fc.constantFrom(...STARTS), msBetween(at('1999-12-01'), at('2101-01-01'))),
        tenants: 3,
        maxCost: 12,
        advances: fc.oneof(
          fc.constant(0),
          fc.integer({ min: 1, max: 3_000 }),
          fc.integer({ min: 50_000, max: 4_000_000 }),
          fc.constantFrom(DAY, 28 * DAY, 31 * DAY),
          msBetween(DAY, 40 * DAY),
          fc.integer({ min: -5_000, max: -1 }),
          fc.constantFrom(-DAY, -30 * DAY),
        ),
      })
      await fc.assert(
        fc.asyncProperty(scenarios, fc.constantFrom({}, { minuteMs: 1_000, hourMs: 10_000 }), (scenario, lengths) =>
          assertTurnsMatchModel(
            client,
            scenario,
            { windows, lengths, keyPrefix: `quota-turns-${randomUUID()}` },
            tally,
          ),
        ),
        { numRuns: 150 },
      )
      expect(tally.multi).toBeGreaterThan(300)
      expect(tally.refusalInMiddle).toBeGreaterThan(20)
    })

  it('derives the day and the month in Lua exactly as the core does, any anchor, 1970 to 2400', async () => {
    let now = 0
    const limiter = createRedisLimiterAt({ client, keyPrefix: `calendar-${randomUUID()}`, now: () => now })
    await fc.assert(
      fc.asyncProperty(
        msBetween(0, at('2400-12-31T23:59:59.999Z')),
        fc.integer({ min: 1, max: 31 }),
        async (time, monthStartDay) => {
          now = time
          const limits = { perMinute: 1, perHour: 1, perDay: 1, perMonth: 1, monthStartDay }
          const decision = await limiter.peek('nobody', limits)
          expect(decision.day!.resetMs).toBe(dayWindowAt(time).endMs - time)
          expect(decision.month!.resetMs).toBe(monthWindowAt(monthStartDay, time).endMs - time)
        },
      ),
      { numRuns: 2_000 },
    )
  })

  it('derives every month edge in Lua as the core does: anchors on the 28th to 31st, leap, common and century years', async () => {
    let now = 0
    const limiter = createRedisLimiterAt({ client, keyPrefix: `calendar-${randomUUID()}`, now: () => now })
    let checked = 0
    for (const year of [1970, 2000, 2027, 2028, 2100, 2200, 2400])
      for (let month = 0; month < 12; month++)
        for (const monthStartDay of [1, 28, 29, 30, 31]) {
          const { startMs, endMs } = monthWindowAt(monthStartDay, Date.UTC(year, month, 15))
          for (const time of [startMs - 1, startMs, endMs - 1]) {
            now = time
            const decision = await limiter.peek('nobody', { perMinute: 1, perHour: 1, perMonth: 1, monthStartDay })
            expect(decision.month!.resetMs, `${new Date(time).toISOString()} anchor ${monthStartDay}`).toBe(
              monthWindowAt(monthStartDay, time).endMs - time,
            )
            checked++
          }
        }
    expect(checked).toBe(7 * 12 * 5 * 3)
  })

  describe('named cases', () => {
    let now = 0
    let keyPrefix = ''
    const fixed = () => createRedisLimiterAt({ client, keyPrefix, now: () => now })
    beforeAll(() => {
      keyPrefix = `quota-named-${randomUUID()}`
    })
    afterAll(() => clean(keyPrefix))

    it.each([
      ['2028 (leap)', '2028-01-31', '2028-02-29', '2028-03-31'],
      ['2027', '2027-01-31', '2027-02-28', '2027-03-31'],
    ])(
      'runs an anchor on the 31st across February %s: January 31st, then the last of February, then March 31st',
      async (_year, jan, feb, mar) => {
        const limiter = fixed()
        const tenant = `anchor-${randomUUID()}`
        const limits = { perMinute: 10, perHour: 100, perMonth: 3, monthStartDay: 31 }
        now = at(`${feb}T00:00:00.000Z`) - 1
        for (let i = 0; i < 3; i++) expect((await limiter.consume(tenant, limits)).admitted).toBe(true)
        const spent = await limiter.consume(tenant, limits)
        expect(spent).toMatchObject({ admitted: false, month: { used: 3, remaining: 0, resetMs: 1 }, retryAfterMs: 1 })
        expect(spent.day).toBeUndefined()
        // The period that began on January 31st ends at the start of the last day of February.
        now = at(`${feb}T00:00:00.000Z`)
        const next = await limiter.consume(tenant, limits)
        expect(next).toMatchObject({
          admitted: true,
          month: { used: 1, remaining: 2, resetMs: at(`${mar}T00:00:00.000Z`) - now },
        })
        expect(monthWindowAt(31, now - 1).startMs).toBe(at(`${jan}T00:00:00.000Z`))
      },
    )

    it('refuses every request while a quota lowered under the count, reports used above the limit, and admits at the month’s end', async () => {
      const limiter = fixed()
      const tenant = `lowered-${randomUUID()}`
      now = at('2026-06-10T12:00:00.000Z')
      const high = { perMinute: 100, perHour: 1_000, perDay: 1_000, perMonth: 50 }
      for (let i = 0; i < 8; i++) await limiter.consume(tenant, high, 5)
      const low = { perMinute: 100, perHour: 1_000, perDay: 1_000, perMonth: 10 }
      now += 3_600_000 * 30
      const refused = await limiter.consume(tenant, low)
      const monthEnd = at('2026-07-01T00:00:00.000Z')
      expect(refused).toMatchObject({
        admitted: false,
        month: { window: 'month', limit: 10, used: 40, remaining: 0, resetMs: monthEnd - now },
        day: { used: 0, remaining: 1_000 },
        retryAfterMs: monthEnd - now,
      })
      now = monthEnd
      expect(await limiter.consume(tenant, low)).toMatchObject({ admitted: true, month: { used: 1, remaining: 9 } })
    })

    it('counts perMonth without perDay: no day field is written or reported', async () => {
      const limiter = fixed()
      const tenant = `month-only-${randomUUID()}`
      now = at('2026-03-15T08:00:00.000Z')
      const limits = { perMinute: 5, perHour: 50, perMonth: 500, monthStartDay: 20 }
      const decision = await limiter.consume(tenant, limits, 2)
      expect(decision).toStrictEqual({
        admitted: true,
        minute: { window: 'minute', limit: 5, remaining: 3, used: 2, resetMs: 60_000 },
        hour: { window: 'hour', limit: 50, remaining: 48, used: 2, resetMs: 3_600_000 },
        month: { window: 'month', limit: 500, remaining: 498, used: 2, resetMs: at('2026-03-20') - now },
        retryAfterMs: 0,
      })
      expect(Object.keys(await client.hgetall(limiter.keyFor(tenant))).sort()).toEqual(
        ['Mc', 'Me', 'Ms', 'hc', 'hs', 'mc', 'ms'].sort(),
      )
    })

    it('takes a cost larger than a quota from nothing, and waits for the quota’s window to end', async () => {
      const limiter = fixed()
      const tenant = `costly-${randomUUID()}`
      now = at('2026-03-15T08:00:00.000Z')
      const limits = { perMinute: 50, perHour: 50, perDay: 50, perMonth: 60 }
      await limiter.consume(tenant, limits, 30)
      const before = await client.hgetall(limiter.keyFor(tenant))
      expect(await limiter.consume(tenant, limits, 31)).toMatchObject({
        admitted: false,
        day: { used: 30 },
        month: { used: 30 },
        retryAfterMs: at('2026-04-01') - now,
      })
      expect(await client.hgetall(limiter.keyFor(tenant))).toEqual(before)
    })

    it('keeps a month counted in while the clock steps back a month, and the next month after its end', async () => {
      const limiter = fixed()
      const model = new LimiterModel()
      const tenant = `steps-${randomUUID()}`
      const limits = { perMinute: 10, perHour: 100, perDay: 100, perMonth: 4, monthStartDay: 30 }
      for (const time of [
        '2027-02-27T10:00:00.000Z',
        '2027-02-28T00:00:00.000Z', // February's last day: the period anchored on the 30th starts
        '2027-01-30T00:00:00.000Z', // a month back: the window counted in lives on
        '2027-03-29T23:59:59.999Z',
        '2027-03-30T00:00:00.000Z',
        '2027-02-01T00:00:00.000Z',
      ]) {
        now = at(time)
        for (let i = 0; i < 3; i++)
          expect(await limiter.consume(tenant, limits)).toStrictEqual(model.consume(tenant, limits, now))
      }
    })
  })

  describe('the hash’s TTL', () => {
    let now = 0
    const keyPrefix = `quota-ttl-${randomUUID()}`
    afterAll(() => clean(keyPrefix))

    it.each(['fixed', 'rolling'] as const)(
      'reaches the month’s end, ending exactly there, and the count is never cut short by the minute and hour (%s)',
      async (windows) => {
        const limiter = createRedisLimiterAt({ client, keyPrefix, now: () => now, windows })
        const tenant = `ttl-${windows}-${randomUUID()}`
        const limits = { perMinute: 10, perHour: 100, perDay: 100, perMonth: 1_000, monthStartDay: 31 }
        now = at('2028-02-03T10:00:00.000Z')
        await limiter.consume(tenant, limits)
        const monthEnd = at('2028-02-29T00:00:00.000Z')
        const ttl = await client.pttl(limiter.keyFor(tenant))
        expect(ttl).toBeLessThanOrEqual(monthEnd - now)
        expect(ttl).toBeGreaterThan(monthEnd - now - 60_000)
        // Days later a new minute, hour and day start: their ends are nearer, and the TTL stays at the month's end.
        now = at('2028-02-20T10:00:00.000Z')
        await limiter.consume(tenant, limits)
        expect(await client.pttl(limiter.keyFor(tenant))).toBeGreaterThan(monthEnd - now - 60_000)
        // Limits without quotas (a plan changed) do not shorten it: the month's count is there when they return.
        now += 2 * 3_600_000
        await limiter.consume(tenant, { perMinute: 10, perHour: 100 })
        expect(await client.pttl(limiter.keyFor(tenant))).toBeGreaterThan(monthEnd - now - 60_000)
        expect(await limiter.peek(tenant, limits)).toMatchObject({ month: { used: 2 } })
      },
    )
  })

  describe('what a decision costs Redis', () => {
    it.each(['fixed', 'rolling'] as const)(
      'decides minute, hour, day and month in one round trip per request, and a tenant without quotas writes no quota field (%s)',
      async (windows) => {
        // Counted on this client's own commands: other clients of the shared Redis do not change the count.
        const own = new Redis(redisUrl!, { enableOfflineQueue: true, maxRetriesPerRequest: 1 })
        const sent: string[] = []
        const send = own.sendCommand.bind(own)
        own.sendCommand = (command, stream) => {
          sent.push(command.name)
          return send(command, stream)
        }
        const keyPrefix = `quota-trips-${randomUUID()}`
        const limiter = createRedisLimiter({ client: own, keyPrefix, windows })
        await own.ping()
        const quotas = { perMinute: 50, perHour: 500, perDay: 1_000, perMonth: 10_000, monthStartDay: 31 }
        const plain = { perMinute: 50, perHour: 500 }
        await limiter.consume('warm-up', quotas)
        await limiter.peek('warm-up', quotas)
        sent.length = 0
        for (let i = 0; i < 20; i++) {
          await limiter.consume('quota', quotas)
          await limiter.peek('quota', quotas)
          await limiter.consume('plain', plain)
        }
        expect(sent).toEqual(Array.from({ length: 60 }, () => 'evalsha'))
        expect(await limiter.peek('quota', quotas)).toMatchObject({ day: { used: 20 }, month: { used: 20 } })
        const plainFields = Object.keys(await own.hgetall(limiter.keyFor('plain')))
        expect(plainFields).toHaveLength(windows === 'fixed' ? 4 : 24)
        expect(plainFields.some((field) => /^[dM]/.test(field))).toBe(false)
        await clean(keyPrefix)
        own.disconnect()
      },
    )

    it('refuses a bad quota before asking Redis, with the option’s name, and the node stays up', async () => {
      const limiter = createRedisLimiter({ client, keyPrefix: `quota-bad-${randomUUID()}` })
      await expect(limiter.consume('t', { perMinute: 1, perHour: 1, perMonth: 5, monthStartDay: 32 })).rejects.toThrow(
        /limits\.monthStartDay/,
      )
      await expect(limiter.consume('t', { perMinute: 1, perHour: 1, perDay: 0 })).rejects.toThrow(/limits\.perDay/)
      await expect(limiter.consume('t', { perMinute: 1, perHour: 1, perMonth: 1.5 })).rejects.toThrow(
        /limits\.perMonth/,
      )
      expect((await limiter.consume('t', { perMinute: 1, perHour: 1 })).admitted).toBe(true)
    })
  })
})

describe.skipIf(!hasRedisServerBinary())('the quotas’ commands inside the script, on a Redis of its own', () => {
  let redis: OwnRedis
  beforeAll(async () => {
    redis = await ownRedis()
  })
  afterAll(async () => redis?.stop())

  it('runs TIME, HMGET and HSET per admitted request with or without quotas, and PEXPIRE only when a window starts', async () => {
    const client = new Redis(redis.url, { enableOfflineQueue: false })
    await new Promise((resolve) => client.once('ready', resolve))
    const limiter = createRedisLimiter({ client })
    const plain = { perMinute: 1_000, perHour: 10_000 }
    const quotas = { ...plain, perDay: 100_000, perMonth: 1_000_000, monthStartDay: 30 }
    await limiter.consume('warm-up', quotas)
    await limiter.consume('warm-up', plain)
    const calls = async () => {
      const stats = await client.info('commandstats')
      return Object.fromEntries([...stats.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)].map((m) => [m[1]!, Number(m[2])]))
    }
    for (const [tenant, limits] of [
      ['plain', plain],
      ['quotas', quotas],
    ] as const) {
      await client.config('RESETSTAT')
      for (let i = 0; i < 50; i++) expect((await limiter.consume(tenant, limits)).admitted).toBe(true)
      const counted = await calls()
      expect([counted.evalsha, counted.time, counted.hmget, counted.hset], tenant).toEqual([50, 50, 50, 50])
      // The first request creates the hash and sets its TTL; a minute edge crossed meanwhile adds a PTTL and a PEXPIRE.
      expect(counted.pexpire ?? 0, tenant).toBeGreaterThanOrEqual(1)
      expect((counted.pexpire ?? 0) + (counted.pttl ?? 0), tenant).toBeLessThanOrEqual(3)
    }
    client.disconnect()
  })
})
