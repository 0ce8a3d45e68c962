/**
 * Random arrival sequences run through a limiter backend and the reference model
 * side by side: every decision must match field by field (admitted, remaining,
 * reset, Retry-After), peeks must change nothing, and where the limits and the
 * clock hold still the documented bound must hold (at most 2× a window's limit
 * in any interval of that window's length).
 *
 * With `quotas: true`, the limits also draw `perDay` / `perMonth` (each often absent) and a
 * `monthStartDay` (1–31, the 29th–31st often), the run starts just before a month's end (a leap
 * February, a common one, months of 30 and 31 days), and steps jump days and months ahead, land on
 * either side of a quota's end and step back across it.
 */
import fc from 'fast-check'
import { expect } from 'vitest'
import type { LimitDecision, WindowLimits } from '@saiku/core'
import { dayWindowAt, monthWindowAt } from '@saiku/core'
import { HOUR_MS, LimiterModel, MINUTE_MS, RollingLimiterModel } from './limiter-model.js'

export const T0 = Date.parse('2030-01-01T00:00:00.000Z')

const DAY_MS = 86_400_000

/**
 * Where runs with quotas start: a little before the end of a leap February, a common February,
 * a month of 30 days, one of 31, and a year; a run then crosses day and month ends.
 */
export const QUOTA_STARTS: readonly number[] = Object.freeze(
  [
    '2028-02-27T23:00:00.000Z',
    '2028-02-28T23:59:00.000Z',
    '2027-02-27T22:00:00.000Z',
    '2030-04-29T23:30:00.000Z',
    '2030-01-30T23:00:00.000Z',
    '2030-12-31T23:59:30.000Z',
  ].map((iso) => Date.parse(iso)),
)

/** One backend instance, fresh for each run, on a clock the run sets. */
export interface LimiterSubject {
  setNow(ms: number): void
  consume(tenantKey: string, limits: WindowLimits, cost: number): LimitDecision | Promise<LimitDecision>
  peek(tenantKey: string, limits: WindowLimits): LimitDecision | Promise<LimitDecision>
  close?(): void | Promise<void>
}

export type Step =
  | { readonly kind: 'advance'; readonly ms: number }
  | { readonly kind: 'edge'; readonly window: 'minute' | 'hour'; readonly offset: number }
  | { readonly kind: 'back'; readonly ms: number }
  /** To `offset` ms from the end of one of the last tenant's quota windows (`index` modulo how many it has). */
  | { readonly kind: 'quotaEdge'; readonly index: number; readonly offset: number }
  | {
      readonly kind: 'request'
      readonly tenant: number
      readonly tier: number
      readonly peek: boolean
      readonly repeat: number
      readonly cost: number
    }

const limitArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 4 }) },
  { weight: 2, arbitrary: fc.integer({ min: 5, max: 70 }) },
  { weight: 1, arbitrary: fc.constantFrom(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER - 1, 2 ** 31) },
)
const tierArb: fc.Arbitrary<WindowLimits> = fc.record({ perMinute: limitArb, perHour: limitArb })

// Quotas: small ones that runs spend, larger ones, and none; drawn apart from the minute and hour, as
// a backend must not rely on them being in order.
const quotaArb = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 8 }) },
  { weight: 2, arbitrary: fc.integer({ min: 9, max: 200 }) },
  { weight: 1, arbitrary: fc.constant(Number.MAX_SAFE_INTEGER) },
)
const monthStartDayArb = fc.oneof(
  { weight: 2, arbitrary: fc.constant(undefined) },
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 31 }) },
  { weight: 3, arbitrary: fc.integer({ min: 28, max: 31 }) },
)
const quotaTierArb: fc.Arbitrary<WindowLimits> = fc
  .record({
    perMinute: limitArb,
    perHour: limitArb,
    perDay: quotaArb,
    perMonth: quotaArb,
    monthStartDay: monthStartDayArb,
  })
  .map(({ perDay, perMonth, monthStartDay, ...limits }) => ({
    ...limits,
    ...(perDay === undefined ? {} : { perDay }),
    ...(perMonth === undefined ? {} : { perMonth }),
    ...(monthStartDay === undefined ? {} : { monthStartDay }),
  }))

export interface ScenarioOptions {
  /** Tenants that take turns (default 2). */
  readonly tenants?: number
  /** Allow the clock to step back (default true). */
  readonly stepsBack?: boolean
  /** Requests cost more than 1 now and then (default false: every request costs 1). */
  readonly costs?: boolean
  /** Tiers per run: more than one means tier changes mid-window (default 1 to 3). */
  readonly tiers?: { readonly min: number; readonly max: number }
  readonly maxSteps?: number
  /**
   * Limits draw `perDay`, `perMonth` and `monthStartDay`, runs start near a month's end (see
   * {@link QUOTA_STARTS}) and steps cross days and months (default false).
   */
  readonly quotas?: boolean
}

export interface Scenario {
  readonly tiers: WindowLimits[]
  readonly steps: Step[]
  /** The clock at the first step. */
  readonly startMs: number
}

export function scenarioArb(options: ScenarioOptions = {}): fc.Arbitrary<Scenario> {
  const tenants = options.tenants ?? 2
  const quotas = options.quotas === true
  // Mostly 1; sometimes a few units, sometimes more than a small window holds.
  const costArb =
    options.costs === true
      ? fc.oneof(
          { weight: 3, arbitrary: fc.constant(1) },
          { weight: 3, arbitrary: fc.integer({ min: 2, max: 5 }) },
          { weight: 1, arbitrary: fc.integer({ min: 6, max: 80 }) },
        )
      : fc.constant(1)
  const stepArb: fc.Arbitrary<Step> = fc.oneof(
    {
      weight: 10,
      arbitrary: fc.record({
        kind: fc.constant('request' as const),
        tenant: fc.nat(tenants - 1),
        tier: fc.nat(7),
        peek: fc.constant(false),
        repeat: fc.integer({ min: 1, max: 6 }),
        cost: costArb,
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('request' as const),
        tenant: fc.nat(tenants - 1),
        tier: fc.nat(7),
        peek: fc.constant(true),
        repeat: fc.constant(1),
        cost: fc.constant(1),
      }),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant('advance' as const),
        ms: fc.oneof(
          fc.integer({ min: 0, max: 3 }),
          fc.integer({ min: 0, max: 30_000 }),
          fc.integer({ min: 0, max: 4_000_000 }),
        ),
      }),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant('edge' as const),
        window: fc.constantFrom('minute' as const, 'hour' as const),
        offset: fc.integer({ min: -2, max: 2 }),
      }),
    },
    ...(options.stepsBack === false
      ? []
      : [
          {
            weight: 1,
            arbitrary: fc.record({
              kind: fc.constant('back' as const),
              ms: quotas
                ? fc.oneof(
                    fc.integer({ min: 1, max: 3 }),
                    fc.integer({ min: 1, max: 4_000_000 }),
                    fc.integer({ min: 1, max: 3 * DAY_MS }),
                  )
                : fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 4_000_000 })),
            }),
          },
        ]),
    ...(quotas
      ? [
          {
            // Days and whole months ahead: a quota's window ends, or several do at once.
            weight: 2,
            arbitrary: fc.record({
              kind: fc.constant('advance' as const),
              ms: fc.oneof(
                fc.integer({ min: 1, max: 2 * DAY_MS }),
                fc.integer({ min: 28 * DAY_MS, max: 32 * DAY_MS }),
                fc.integer({ min: 1, max: 62 * DAY_MS }),
              ),
            }),
          },
          {
            weight: 4,
            arbitrary: fc.record({
              kind: fc.constant('quotaEdge' as const),
              index: fc.nat(1),
              offset: fc.oneof(fc.integer({ min: -2, max: 2 }), fc.integer({ min: -HOUR_MS, max: HOUR_MS })),
            }),
          },
        ]
      : []),
  )
  const tiers = options.tiers ?? { min: 1, max: 3 }
  return fc.record({
    tiers: fc.array(quotas ? quotaTierArb : tierArb, { minLength: tiers.min, maxLength: tiers.max }),
    steps: fc.array(stepArb, { minLength: 1, maxLength: options.maxSteps ?? 40 }),
    startMs: quotas ? fc.constantFrom(...QUOTA_STARTS) : fc.constant(T0),
  })
}

const quotaState = (state: LimitDecision['day']) =>
  state === undefined
    ? undefined
    : { window: state.window, limit: state.limit, remaining: state.remaining, used: state.used, resetMs: state.resetMs }

const pick = (d: LimitDecision) => ({
  admitted: d.admitted,
  minute: { limit: d.minute.limit, remaining: d.minute.remaining, used: d.minute.used, resetMs: d.minute.resetMs },
  hour: { limit: d.hour.limit, remaining: d.hour.remaining, used: d.hour.used, resetMs: d.hour.resetMs },
  retryAfterMs: d.retryAfterMs,
  // Present exactly when the limits set the quota.
  day: quotaState(d.day),
  hasDay: d.day !== undefined,
  month: quotaState(d.month),
  hasMonth: d.month !== undefined,
})

export interface RunOptions extends ScenarioOptions {
  readonly numRuns: number
  readonly maxTenants?: number
  /**
   * Check the bound on runs whose limits and clock hold still: 2× a window's limit for fixed windows,
   * 1× for rolling ones; with quotas, at most the quota in each calendar day and month.
   */
  readonly checkBound?: boolean
  /** Compare with the rolling windows' model (default: fixed windows). */
  readonly windows?: 'fixed' | 'rolling'
  readonly seed?: number
}

/** Runs random sequences through fresh subjects and the model; every decision must match. */
export async function assertMatchesModel(
  createSubject: () => LimiterSubject | Promise<LimiterSubject>,
  options: RunOptions,
): Promise<void> {
  const tenants = options.tenants ?? 2
  await fc.assert(
    fc.asyncProperty(scenarioArb(options), async ({ tiers, steps, startMs }) => {
      const subject = await createSubject()
      const rolling = options.windows === 'rolling'
      const rollingModel = rolling ? new RollingLimiterModel() : null
      const model =
        rollingModel ?? new LimiterModel(options.maxTenants === undefined ? {} : { maxTenants: options.maxTenants })
      const admittedAt: number[][] = Array.from({ length: tenants }, () => [])
      let now = startMs
      let lastTenant = 0
      let lastTier = 0
      let monotonic = true
      try {
        for (const step of steps) {
          if (step.kind === 'advance') now += step.ms
          else if (step.kind === 'back') {
            now -= step.ms
            monotonic = false
          } else if (step.kind === 'edge') {
            const end = model.windowEnds(`t${lastTenant}`, now)[step.window]
            if (end !== null) {
              if (end + step.offset < now) monotonic = false
              now = end + step.offset
            }
          } else if (step.kind === 'quotaEdge') {
            const ends = model.quotaEnds(`t${lastTenant}`, tiers[lastTier % tiers.length]!, now)
            if (ends.length > 0) {
              const target = ends[step.index % ends.length]! + step.offset
              if (target < now) monotonic = false
              now = target
            }
          } else {
            lastTenant = step.tenant
            lastTier = step.tier
            const key = `t${step.tenant}`
            const limits = tiers[step.tier % tiers.length]!
            subject.setNow(now)
            for (let i = 0; i < step.repeat; i++) {
              const expected = step.peek ? model.peek(key, limits, now) : model.consume(key, limits, now, step.cost)
              const actual = step.peek ? await subject.peek(key, limits) : await subject.consume(key, limits, step.cost)
              expect(pick(actual)).toEqual(pick(expected))
              if (rollingModel !== null && !expected.admitted && !step.peek) {
                // Retry-After is the true earliest admission: not a millisecond sooner, and then for sure.
                const cost = step.cost
                expect(
                  rollingModel.wouldAdmit(key, limits, now + expected.retryAfterMs, cost) ||
                    cost >
                      Math.min(
                        limits.perMinute,
                        limits.perHour,
                        limits.perDay ?? Infinity,
                        limits.perMonth ?? Infinity,
                      ),
                ).toBe(true)
                expect(rollingModel.wouldAdmit(key, limits, now + expected.retryAfterMs - 1, cost)).toBe(false)
              }
              if (actual.admitted && !step.peek)
                for (let unit = 0; unit < step.cost; unit++) admittedAt[step.tenant]!.push(now)
            }
          }
        }
      } finally {
        await subject.close?.()
      }
      const still = tiers.length === 1 && monotonic
      if (options.checkBound === true && still && model.evictions === 0) {
        const limits = tiers[0]!
        const factor = rolling ? 1 : 2
        for (const times of admittedAt) {
          expect(maxInAnyInterval(times, MINUTE_MS)).toBeLessThanOrEqual(factor * limits.perMinute)
          expect(maxInAnyInterval(times, HOUR_MS)).toBeLessThanOrEqual(factor * limits.perHour)
          // Quotas are exact: never more than the quota in one calendar day or month.
          if (limits.perDay !== undefined)
            expect(maxInOneWindow(times, (at) => dayWindowAt(at).startMs)).toBeLessThanOrEqual(limits.perDay)
          if (limits.perMonth !== undefined) {
            const startDay = limits.monthStartDay ?? 1
            expect(maxInOneWindow(times, (at) => monthWindowAt(startDay, at).startMs)).toBeLessThanOrEqual(
              limits.perMonth,
            )
          }
        }
      }
    }),
    { numRuns: options.numRuns, ...(options.seed === undefined ? {} : { seed: options.seed }) },
  )
}

/** Most timestamps in one calendar window, each window named by its start. */
function maxInOneWindow(times: readonly number[], windowOf: (at: number) => number): number {
  const counts = new Map<number, number>()
  for (const at of times) counts.set(windowOf(at), (counts.get(windowOf(at)) ?? 0) + 1)
  return Math.max(0, ...counts.values())
}

/** Most timestamps (sorted ascending) within any half-open interval of `length`. */
export function maxInAnyInterval(times: readonly number[], length: number): number {
  let best = 0
  let first = 0
  for (let last = 0; last < times.length; last++) {
    while (times[last]! - times[first]! >= length) first++
    best = Math.max(best, last - first + 1)
  }
  return best
}

/**
 * A client sending evenly at `fraction` of both windows' L/W, from a random phase,
 * for longer than two hours of its window lengths: every request must be admitted.
 */
export async function assertEvenRateAdmitted(
  createSubject: (lengths: { minuteMs: number; hourMs: number }) => LimiterSubject | Promise<LimiterSubject>,
  options: { readonly numRuns: number; readonly minuteMs: number; readonly hourMs: number; readonly maxLimit: number },
): Promise<void> {
  const { minuteMs, hourMs } = options
  const arb = fc
    .record({
      perMinute: fc.integer({ min: 1, max: options.maxLimit }),
      hourFactor: fc.integer({ min: 1, max: 80 }),
      phase: fc.integer({ min: 0, max: hourMs }),
      slack: fc.integer({ min: 0, max: 3 }),
    })
    .map(({ perMinute, hourFactor, phase, slack }) => ({
      limits: { perMinute, perHour: perMinute * hourFactor },
      phase,
      slack,
    }))
  await fc.assert(
    fc.asyncProperty(arb, async ({ limits, phase, slack }) => {
      // The stated rate: 10/11 of L/W for each window, the slower of the two, in whole milliseconds.
      const interval =
        Math.max(Math.ceil((minuteMs * 11) / 10 / limits.perMinute), Math.ceil((hourMs * 11) / 10 / limits.perHour)) +
        slack
      const subject = await createSubject({ minuteMs, hourMs })
      try {
        const requests = Math.ceil((2 * hourMs) / interval) + 1
        for (let i = 0; i < requests; i++) {
          const at = T0 + phase + i * interval
          subject.setNow(at)
          const decision = await subject.consume('even', limits, 1)
          expect(decision.admitted, `request ${i} at +${i * interval} ms`).toBe(true)
        }
      } finally {
        await subject.close?.()
      }
    }),
    { numRuns: options.numRuns },
  )
}
