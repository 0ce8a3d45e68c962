import { describe, expect, it } from 'vitest'
import { LimiterModel } from '@saiku/test-support/limiter-model'
import {
  assertEvenRateAdmitted,
  assertMatchesModel,
  T0,
  type LimiterSubject,
} from '@saiku/test-support/limiter-properties'
import { createMemoryLimiter } from './memory-limiter.js'

function memorySubject(maxTenants?: number, windows: 'fixed' | 'rolling' = 'fixed'): LimiterSubject {
  let now = T0
  const limiter = createMemoryLimiter({ now: () => now, windows, ...(maxTenants === undefined ? {} : { maxTenants }) })
  return {
    setNow: (ms) => (now = ms),
    consume: (key, limits, cost) => limiter.consumeSync(key, limits, cost),
    peek: (key, limits) => limiter.peekSync(key, limits),
  }
}

describe('the memory backend against the reference model', () => {
  it('decides every random sequence as the model does: edges, tier changes, refusals, steps back, peeks', async () => {
    await assertMatchesModel(() => memorySubject(), { numRuns: 3_000, tenants: 2 })
  })

  it('takes a request’s cost from both windows or nothing, as the model does (random costs, some above a window)', async () => {
    await assertMatchesModel(() => memorySubject(), { numRuns: 1_500, tenants: 2, costs: true })
  })

  it('admits at most twice a window’s limit in units in any interval of its length, with random costs', async () => {
    await assertMatchesModel(() => memorySubject(), {
      numRuns: 500,
      tenants: 1,
      tiers: { min: 1, max: 1 },
      stepsBack: false,
      checkBound: true,
      maxSteps: 60,
      costs: true,
    })
  })

  it('forgets the tenant seen least recently when full, as the model does', async () => {
    await assertMatchesModel(() => memorySubject(2), { numRuns: 1_500, tenants: 3, maxTenants: 2 })
  })

  it('admits at most twice a window’s limit in any interval of its length', async () => {
    await assertMatchesModel(() => memorySubject(), {
      numRuns: 1_500,
      tenants: 1,
      tiers: { min: 1, max: 1 },
      stepsBack: false,
      checkBound: true,
      maxSteps: 60,
    })
  })
})

describe('the memory backend’s day and month quotas against the model', () => {
  it('decides as the model does across day and month ends, 29th–31st anchors, leap Februaries, steps back and costs', async () => {
    await assertMatchesModel(() => memorySubject(), { numRuns: 1_500, tenants: 2, costs: true, quotas: true })
  })

  it('forgets a tenant’s quotas with its windows when full, as the model does', async () => {
    await assertMatchesModel(() => memorySubject(2), { numRuns: 500, tenants: 3, maxTenants: 2, quotas: true })
  })

  it('never admits more than a quota in one calendar day or month', async () => {
    await assertMatchesModel(() => memorySubject(), {
      numRuns: 500,
      tenants: 1,
      tiers: { min: 1, max: 1 },
      stepsBack: false,
      checkBound: true,
      maxSteps: 60,
      costs: true,
      quotas: true,
    })
  })

  it('counts the quotas on calendar windows under rolling minute and hour, as the model does', async () => {
    await assertMatchesModel(() => memorySubject(undefined, 'rolling'), {
      numRuns: 1_000,
      tenants: 2,
      costs: true,
      quotas: true,
      windows: 'rolling',
    })
  })

  it('never admits more than a quota in one calendar window under rolling minute and hour', async () => {
    await assertMatchesModel(() => memorySubject(undefined, 'rolling'), {
      numRuns: 400,
      tenants: 1,
      tiers: { min: 1, max: 1 },
      stepsBack: false,
      checkBound: true,
      maxSteps: 60,
      costs: true,
      quotas: true,
      windows: 'rolling',
    })
  })
})

describe('the memory backend’s rolling windows against their model', () => {
  it('decides every random sequence as the model does, and each Retry-After is the true earliest admission', async () => {
    await assertMatchesModel(() => memorySubject(undefined, 'rolling'), {
      numRuns: 1_000,
      tenants: 2,
      costs: true,
      windows: 'rolling',
    })
  })

  it('never admits more than a window’s limit in any span of its length, both windows at once', async () => {
    await assertMatchesModel(() => memorySubject(undefined, 'rolling'), {
      numRuns: 800,
      tenants: 1,
      tiers: { min: 1, max: 1 },
      stepsBack: false,
      checkBound: true,
      maxSteps: 80,
      costs: true,
      windows: 'rolling',
    })
  })

  it('never refuses a client sending evenly at 10/11 of L/W', async () => {
    await assertEvenRateAdmitted(() => memorySubject(undefined, 'rolling'), {
      numRuns: 40,
      minuteMs: 60_000,
      hourMs: 3_600_000,
      maxLimit: 60,
    })
  })

  it('counts the oldest sub-window whole: a minute of 3 admits again only once the first 6 s have dropped out', () => {
    let now = T0
    const limiter = createMemoryLimiter({ now: () => now, windows: 'rolling' })
    const limits = { perMinute: 3, perHour: 100 }
    for (const at of [0, 1_000, 2_000]) {
      now = T0 + at
      expect(limiter.consumeSync('t', limits).admitted).toBe(true)
    }
    now = T0 + 60_000
    // Fixed windows would start over here; the requests of 0-6 s still count until 66 s.
    expect(limiter.consumeSync('t', limits)).toMatchObject({
      admitted: false,
      retryAfterMs: 6_000,
      minute: { remaining: 0, resetMs: 6_000 },
      hour: { remaining: 97 },
    })
    now = T0 + 65_999
    expect(limiter.consumeSync('t', limits)).toMatchObject({ admitted: false, retryAfterMs: 1 })
    now = T0 + 66_000
    expect(limiter.consumeSync('t', limits)).toMatchObject({
      admitted: true,
      minute: { remaining: 2, resetMs: 66_000 },
    })
  })
})

describe('memory backend regressions', () => {
  const clock = () => {
    let now = 0
    return { now: () => now, set: (ms: number) => (now = ms) }
  }

  it('keeps the minute window running when a new hour starts (179 in 6 ms on the old code)', () => {
    const time = clock()
    const limiter = createMemoryLimiter({ now: time.now })
    const starter = { perMinute: 60, perHour: 1_000 }
    let admitted = 0
    const at = (ms: number, times: number) => {
      time.set(ms)
      for (let i = 0; i < times; i++) if (limiter.consumeSync('t', starter).admitted) admitted++
    }
    at(0, 1)
    at(3_539_995, 1)
    at(3_599_994, 59)
    const beforeBoundary = admitted
    at(3_599_995, 60)
    at(3_600_000, 60)
    // The minute that started at 3,539,995 ms is spent and runs to 3,599,995; the next one admits 60.
    expect(admitted - beforeBoundary).toBe(60)
    expect(admitted).toBe(121)
  })

  it('starts no minute window for a request the hour refuses', () => {
    const time = clock()
    const limiter = createMemoryLimiter({ now: time.now })
    expect(limiter.consumeSync('t', { perMinute: 1, perHour: 1 }).admitted).toBe(true)
    time.set(60_000)
    expect(limiter.consumeSync('t', { perMinute: 1, perHour: 1 }).admitted).toBe(false)
    time.set(100_000)
    const raised = limiter.consumeSync('t', { perMinute: 1, perHour: 100 })
    expect(raised).toMatchObject({ admitted: true, minute: { resetMs: 60_000 } })
    time.set(120_000)
    expect(limiter.consumeSync('t', { perMinute: 1, perHour: 100 })).toMatchObject({
      admitted: false,
      retryAfterMs: 40_000,
    })
  })

  it('peeks without restarting an ended window or changing any later decision', () => {
    const time = clock()
    const limiter = createMemoryLimiter({ now: time.now })
    const limits = { perMinute: 2, perHour: 10 }
    limiter.consumeSync('t', limits)
    time.set(70_000)
    expect(limiter.peekSync('t', limits)).toMatchObject({
      admitted: true,
      minute: { remaining: 2, resetMs: 60_000 },
      hour: { remaining: 9 },
    })
    time.set(80_000)
    // The minute starts at this request, not at the peek.
    expect(limiter.consumeSync('t', limits).minute.resetMs).toBe(60_000)
    expect(limiter.trackedTenants).toBe(1)
    expect(limiter.peekSync('nobody', limits)).toMatchObject({ admitted: true, minute: { remaining: 2 } })
    expect(limiter.trackedTenants).toBe(1)
  })

  it('forgets an idle tenant before an active one that is spent', () => {
    const time = clock()
    const limiter = createMemoryLimiter({ now: time.now, maxTenants: 2 })
    const one = { perMinute: 1, perHour: 1 }
    limiter.consumeSync('active', one)
    time.set(1)
    limiter.consumeSync('idle', one)
    time.set(2)
    expect(limiter.consumeSync('active', one).admitted).toBe(false)
    time.set(3)
    expect(limiter.consumeSync('newcomer', one).admitted).toBe(true)
    // The old code forgot the oldest hour, the active tenant's, and let it start over.
    expect(limiter.consumeSync('active', one)).toMatchObject({ admitted: false, hour: { remaining: 0 } })
  })

  it('never forgets a live window while at most maxTenants tenants make requests within an hour', () => {
    const time = clock()
    const limiter = createMemoryLimiter({ now: time.now, maxTenants: 3 })
    const one = { perMinute: 1, perHour: 1 }
    for (let round = 0; round < 50; round++) {
      // Three tenants take turns within the hour, a fourth arrives after the first three's hours ended.
      time.set(round * 3_700_000)
      for (const tenant of ['a', 'b', 'c'])
        expect(limiter.consumeSync(`${tenant}${round % 2}`, one).admitted).toBe(true)
      for (const tenant of ['a', 'b', 'c'])
        expect(limiter.consumeSync(`${tenant}${round % 2}`, one).admitted).toBe(false)
    }
    expect(limiter.trackedTenants).toBe(3)
  })

  it('bounds what churn over more tenants than maxTenants gains: one budget per time a tenant is forgotten', () => {
    const time = clock()
    const limiter = createMemoryLimiter({ now: time.now, maxTenants: 2 })
    const model = new LimiterModel({ maxTenants: 2 })
    const one = { perMinute: 1, perHour: 1 }
    let admitted = 0
    for (let i = 0; i < 300; i++) {
      time.set(i * 10)
      const tenant = `t${i % 3}`
      const decision = limiter.consumeSync(tenant, one)
      expect(decision.admitted).toBe(model.consume(tenant, one, i * 10).admitted)
      if (decision.admitted) admitted++
    }
    // The stated worst case: each tenant's own budget, plus one budget per time a live tenant was forgotten.
    expect(model.evictions).toBeGreaterThan(0)
    expect(admitted).toBeLessThanOrEqual(3 * one.perHour + model.evictions * one.perHour)
  })
})
