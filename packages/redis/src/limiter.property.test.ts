import { randomUUID } from 'node:crypto'
import fc from 'fast-check'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LimiterModel } from '@saiku/test-support/limiter-model'
import {
  assertEvenRateAdmitted,
  assertMatchesModel,
  T0,
  type LimiterSubject,
} from '@saiku/test-support/limiter-properties'
import { redisUrl } from '@saiku/test-support/services'
import { createAuthenticator, DEFAULT_TIERS, MemoryKeyStore } from '@saiku/core'
import { createRedisLimiter, createRedisLimiterAt } from './limiter.js'
import { assertTurnsMatchModel, newTally, turnScenarioArb } from './model-turns.js'
import { rollingRedisOptions } from './readme-rolling.js'

describe.skipIf(redisUrl === undefined)('the Redis script against the reference model, time injected', () => {
  let client: Redis
  beforeAll(async () => {
    client = new Redis(redisUrl!, { enableOfflineQueue: true, maxRetriesPerRequest: 1 })
    await client.ping()
  })
  afterAll(() => client.disconnect())

  function redisSubject(
    windows: 'fixed' | 'rolling' = 'fixed',
    lengths: { minuteMs?: number; hourMs?: number } = {},
  ): LimiterSubject {
    let now = T0
    const keyPrefix = `prop-${randomUUID()}`
    const limiter = createRedisLimiterAt({ client, keyPrefix, now: () => now, windows, ...lengths })
    return {
      setNow: (ms) => (now = ms),
      consume: (key, limits, cost) => limiter.consume(key, limits, cost),
      peek: (key, limits) => limiter.peek(key, limits),
      close: async () => {
        const keys = await client.keys(`${keyPrefix}:*`)
        if (keys.length > 0) await client.del(...keys)
      },
    }
  }

  it('decides every random sequence as the model does: edges, tier changes, refusals, steps back, peeks', async () => {
    await assertMatchesModel(() => redisSubject(), { numRuns: 800, tenants: 2 })
  })

  it('takes a request’s cost from both windows or nothing in one script, as the model does (random costs)', async () => {
    await assertMatchesModel(() => redisSubject(), { numRuns: 250, tenants: 2, costs: true })
  })

  it('admits at most twice a window’s limit in any interval of its length', async () => {
    await assertMatchesModel(() => redisSubject(), {
      numRuns: 100,
      tenants: 1,
      tiers: { min: 1, max: 1 },
      stepsBack: false,
      checkBound: true,
      maxSteps: 50,
    })
  })

  it('decides rolling windows as their model does, each Retry-After the true earliest admission, in one script', async () => {
    await assertMatchesModel(() => redisSubject('rolling'), {
      numRuns: 300,
      tenants: 2,
      costs: true,
      windows: 'rolling',
    })
  })

  it('never admits more than a rolling window’s limit in any span of its length, both windows at once', async () => {
    await assertMatchesModel(() => redisSubject('rolling'), {
      numRuns: 150,
      tenants: 1,
      tiers: { min: 1, max: 1 },
      stepsBack: false,
      checkBound: true,
      maxSteps: 60,
      costs: true,
      windows: 'rolling',
    })
  })

  it('never refuses a client sending evenly at 10/11 of L/W through rolling windows (windows scaled to 1 s and 60 s)', async () => {
    await assertEvenRateAdmitted((lengths) => redisSubject('rolling', lengths), {
      numRuns: 12,
      minuteMs: 1_000,
      hourMs: 60_000,
      maxLimit: 10,
    })
  })

  for (const windows of ['fixed', 'rolling'] as const)
    it(`decides the decisions of one turn in one batch, in arrival order, as the model does one by one (${windows})`, async () => {
      const tally = newTally()
      const limits = fc
        .record({ perMinute: fc.integer({ min: 1, max: 8 }), hourExtra: fc.integer({ min: 0, max: 12 }) })
        .map(({ perMinute, hourExtra }) => ({ perMinute, perHour: perMinute + hourExtra }))
      const scenarios = turnScenarioArb(limits, {
        start: fc.constant(T0),
        tenants: 3,
        maxCost: 4,
        advances: fc.oneof(
          fc.constant(0),
          fc.integer({ min: 1, max: 3_000 }),
          fc.integer({ min: 5_000, max: 70_000 }),
          fc.integer({ min: 3_000_000, max: 4_000_000 }),
          fc.integer({ min: -5_000, max: -1 }),
        ),
      })
      await fc.assert(
        fc.asyncProperty(scenarios, fc.constantFrom({}, { minuteMs: 1_000, hourMs: 10_000 }), (scenario, lengths) =>
          assertTurnsMatchModel(client, scenario, { windows, lengths, keyPrefix: `turns-${randomUUID()}` }, tally),
        ),
        { numRuns: 150 },
      )
      // The property says nothing unless batches of several decisions, refusals among them, really went out.
      expect(tally.multi).toBeGreaterThan(300)
      expect(tally.refusalInMiddle).toBeGreaterThan(20)
      expect(tally.largest).toBeGreaterThan(8)
    })

  it('runs the README’s rolling setup: an authenticator counting rolling windows in Redis', async () => {
    const tenantId = `t-${randomUUID()}`
    const store = new MemoryKeyStore({
      tenants: [
        { tenantId, tenantSlug: 'acme', tier: 'tiny', connectionName: 'w', subscription: { status: 'active' } },
      ],
      tiers: { ...DEFAULT_TIERS, tiny: { perMinute: 2, perHour: 10 } },
    })
    const options = rollingRedisOptions(client)
    const auth = createAuthenticator(store, { ...options, tiers: { tiny: { perMinute: 2, perHour: 10 } } })
    const { key } = await auth.keys.create(tenantId, { label: 'agent' })
    const request = { headers: { authorization: `Bearer ${key}` }, method: 'GET', url: '/me/tenant' }
    expect((await auth.authenticate(request)).ok).toBe(true)
    expect((await auth.authenticate(request)).ok).toBe(true)
    const refused = await auth.authenticate(request)
    expect(refused).toMatchObject({ ok: false, status: 429 })
    expect(Number((refused as { headers: Record<string, string> }).headers['retry-after'])).toBeGreaterThanOrEqual(1)
    const backend = options.limiter!.backend as ReturnType<typeof createRedisLimiter>
    expect(Object.keys(await client.hgetall(backend.keyFor(tenantId)))).toHaveLength(24)
    auth.close()
  })

  it('takes a cost of n in one round trip, all or nothing, fixed and rolling', async () => {
    for (const windows of ['fixed', 'rolling'] as const) {
      const limiter = createRedisLimiter({ client, keyPrefix: `cost-${randomUUID()}`, windows })
      const limits = { perMinute: 5, perHour: 50 }
      // Loaded first, so a cold script cache (EVALSHA, then EVAL) does not count here.
      await limiter.consume('warm-up', limits, 1)
      await client.config('RESETSTAT')
      expect(await limiter.consume('t', limits, 3)).toMatchObject({
        admitted: true,
        minute: { remaining: 2 },
        hour: { remaining: 47 },
      })
      const before = await client.hgetall(limiter.keyFor('t'))
      expect(await limiter.consume('t', limits, 3)).toMatchObject({
        admitted: false,
        minute: { remaining: 2 },
        hour: { remaining: 47 },
      })
      expect(await client.hgetall(limiter.keyFor('t'))).toEqual(before)
      const stats = await client.info('commandstats')
      const calls = Object.fromEntries(
        [...stats.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)].map((m) => [m[1], Number(m[2])]),
      )
      expect((calls.evalsha ?? 0) + (calls.eval ?? 0), windows).toBe(2)
    }
  })

  it('decides rolling windows in one round trip, and a peek writes nothing', async () => {
    const limiter = createRedisLimiter({ client, keyPrefix: `rolling-${randomUUID()}`, windows: 'rolling' })
    const limits = { perMinute: 5, perHour: 50 }
    await client.config('RESETSTAT')
    for (let i = 0; i < 7; i++) expect((await limiter.consume('t', limits, 1)).admitted).toBe(i < 5)
    const before = await client.hgetall(limiter.keyFor('t'))
    expect(Object.keys(before)).toHaveLength(24)
    expect(await limiter.peek('t', limits)).toMatchObject({
      admitted: false,
      minute: { remaining: 0 },
      hour: { remaining: 45 },
    })
    expect(await client.hgetall(limiter.keyFor('t'))).toEqual(before)
    const stats = await client.info('commandstats')
    const calls = Object.fromEntries(
      [...stats.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)].map((m) => [m[1], Number(m[2])]),
    )
    expect((calls.evalsha ?? 0) + (calls.eval ?? 0)).toBe(8)
    expect(await client.pttl(limiter.keyFor('t'))).toBeGreaterThan(3_600_000)
  })

  it('keeps the minute running when the hour starts over, and the hash alive until the later window ends', async () => {
    let now = 0
    const keyPrefix = `edge-${randomUUID()}`
    const limiter = createRedisLimiterAt({ client, keyPrefix, now: () => now })
    const model = new LimiterModel()
    const starter = { perMinute: 60, perHour: 1_000 }
    let admitted = 0
    for (const [at, times] of [
      [0, 1],
      [3_539_995, 1],
      [3_599_994, 59],
      [3_599_995, 60],
      [3_600_000, 60],
    ] as const) {
      now = at
      for (let i = 0; i < times; i++) {
        const decision = await limiter.consume('t', starter)
        expect(decision).toEqual(model.consume('t', starter, at))
        if (decision.admitted) admitted++
      }
    }
    expect(admitted).toBe(121)
    // The minute began at 3,599,995 and outlives the hour that ends at 3,600,000: the TTL covers the minute.
    expect(await client.pttl(limiter.keyFor('t'))).toBeGreaterThan(59_000)
    // A new minute and hour start together; 3,599,000 ms later a new minute outlives that hour by 59 s.
    now = 3_659_995
    expect(await limiter.consume('t', starter)).toMatchObject({
      admitted: true,
      minute: { resetMs: 60_000 },
      hour: { resetMs: 3_600_000 },
    })
    now = 3_659_995 + 3_599_000
    expect(await limiter.consume('t', starter)).toMatchObject({
      admitted: true,
      minute: { resetMs: 60_000 },
      hour: { resetMs: 1_000 },
    })
    expect(await client.pttl(limiter.keyFor('t'))).toBeGreaterThan(59_000)
    await client.del(limiter.keyFor('t'))
  })

  it('sets a TTL that covers whichever window ends later (the production script, windows scaled down)', async () => {
    const limiter = createRedisLimiter({ client })
    const key = limiter.keyFor(`scaled-${randomUUID()}`)
    // Windows of 1 s and 4 s: a new minute starting 3.3 s into the hour outlives it by 0.3 s.
    const scripted = client as unknown as {
      saikuConsume(...args: (string | number)[]): Promise<[number, number, number, number, number]>
    }
    const call = () => scripted.saikuConsume(key, 3, 100, 1_000, 4_000)
    await call()
    await new Promise((resolve) => setTimeout(resolve, 3_300))
    const [admitted, , minuteResetMs, , hourResetMs] = await call()
    const ttl = await client.pttl(key)
    expect(admitted).toBe(1)
    expect(minuteResetMs).toBeGreaterThan(hourResetMs)
    expect(ttl).toBeGreaterThan(minuteResetMs - 100)
  })

  it('peeks in one round trip that writes nothing', async () => {
    let now = T0
    const limiter = createRedisLimiterAt({ client, keyPrefix: `peek-${randomUUID()}`, now: () => now })
    await limiter.consume('t', { perMinute: 2, perHour: 5 })
    const before = await client.hgetall(limiter.keyFor('t'))
    now = T0 + 70_000
    for (let i = 0; i < 5; i++)
      expect(await limiter.peek('t', { perMinute: 2, perHour: 5 })).toMatchObject({
        admitted: true,
        minute: { remaining: 2, resetMs: 60_000 },
        hour: { remaining: 4 },
      })
    expect(await client.hgetall(limiter.keyFor('t'))).toEqual(before)
    expect(await limiter.peek('nobody', { perMinute: 2, perHour: 5 })).toMatchObject({
      admitted: true,
      minute: { remaining: 2 },
    })
    expect(await client.exists(limiter.keyFor('nobody'))).toBe(0)
  })
})
