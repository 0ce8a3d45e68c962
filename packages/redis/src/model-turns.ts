// For the property tests: decisions issued together in one event-loop turn, so that the limiter
// coalesces them, against the reference model applying them one by one in the same order.
import fc from 'fast-check'
import { expect } from 'vitest'
import { LimiterModel, RollingLimiterModel } from '@saiku/test-support/limiter-model'
import type { LimitDecision, WindowLimits } from '@saiku/core'
import { createRedisLimiterAt, type RedisScriptClient } from './limiter.js'

export interface TurnDecision {
  readonly peek: boolean
  readonly tenant: number
  readonly tier: number
  readonly cost: number
}

export interface Turn {
  /** How far the clock moves before the turn (back when negative). */
  readonly advanceMs: number
  readonly decisions: readonly TurnDecision[]
}

export interface TurnScenario {
  readonly start: number
  readonly tiers: readonly WindowLimits[]
  readonly turns: readonly Turn[]
  /** The limiter's `maxBatchSize`: small ones split a turn into several calls. */
  readonly maxBatchSize: number
}

/** What the runs saw of the batches: the property is empty unless they really formed. */
export interface BatchTally {
  /** Script calls of more than one decision. */
  multi: number
  /** Batches in which a refused count sat between two admitted ones. */
  refusalInMiddle: number
  largest: number
}

export const newTally = (): BatchTally => ({ multi: 0, refusalInMiddle: 0, largest: 0 })

export function turnScenarioArb(
  limits: fc.Arbitrary<WindowLimits>,
  options: { start: fc.Arbitrary<number>; tenants: number; maxCost: number; advances: fc.Arbitrary<number> },
): fc.Arbitrary<TurnScenario> {
  const decision = fc.record({
    peek: fc.oneof({ weight: 4, arbitrary: fc.constant(false) }, fc.constant(true)),
    tenant: fc.integer({ min: 0, max: options.tenants - 1 }),
    tier: fc.integer({ min: 0, max: 2 }),
    cost: fc.oneof({ weight: 3, arbitrary: fc.constant(1) }, fc.integer({ min: 1, max: options.maxCost })),
  })
  return fc.record({
    start: options.start,
    tiers: fc.array(limits, { minLength: 1, maxLength: 3 }),
    turns: fc.array(
      fc.record({ advanceMs: options.advances, decisions: fc.array(decision, { minLength: 1, maxLength: 14 }) }),
      { minLength: 1, maxLength: 10 },
    ),
    maxBatchSize: fc.constantFrom(128, 128, 4),
  })
}

/**
 * Runs `scenario` against Redis (each turn's decisions issued at once, `Promise.all`) and the model
 * (one after the other in the same order), and expects every field of every decision to be the model's.
 */
export async function assertTurnsMatchModel(
  client: RedisScriptClient & { keys(pattern: string): Promise<string[]>; del(...keys: string[]): Promise<number> },
  scenario: TurnScenario,
  settings: { windows: 'fixed' | 'rolling'; lengths: { minuteMs?: number; hourMs?: number }; keyPrefix: string },
  tally: BatchTally,
): Promise<void> {
  let now = scenario.start
  const sizes: number[] = []
  const limiter = createRedisLimiterAt({
    client,
    keyPrefix: settings.keyPrefix,
    now: () => now,
    windows: settings.windows,
    maxBatchSize: scenario.maxBatchSize,
    onBatch: (size) => sizes.push(size),
    ...settings.lengths,
  })
  const model =
    settings.windows === 'fixed' ? new LimiterModel(settings.lengths) : new RollingLimiterModel(settings.lengths)
  const limitsOf = (tier: number) => scenario.tiers[tier % scenario.tiers.length]!
  try {
    for (const turn of scenario.turns) {
      now += turn.advanceMs
      sizes.length = 0
      const got = await Promise.all(
        turn.decisions.map((d) =>
          d.peek
            ? limiter.peek(`t${d.tenant}`, limitsOf(d.tier))
            : limiter.consume(`t${d.tenant}`, limitsOf(d.tier), d.cost),
        ),
      )
      const want: LimitDecision[] = turn.decisions.map((d) =>
        d.peek
          ? model.peek(`t${d.tenant}`, limitsOf(d.tier), now)
          : model.consume(`t${d.tenant}`, limitsOf(d.tier), now, d.cost),
      )
      expect(got, `turn at ${now}: ${JSON.stringify(turn.decisions)}`).toStrictEqual(want)
      // The batch-size metric: every decision of the turn went in a batch of at most maxBatchSize.
      expect(sizes.reduce((sum, size) => sum + size, 0)).toBe(turn.decisions.length)
      expect(Math.max(...sizes)).toBeLessThanOrEqual(scenario.maxBatchSize)
      let first = 0
      for (const size of sizes) {
        tally.largest = Math.max(tally.largest, size)
        if (size > 1) tally.multi++
        const counts = turn.decisions
          .slice(first, first + size)
          .map((d, i) => (d.peek ? undefined : want[first + i]!.admitted))
        const refusedAt = counts.findIndex(
          (admitted, i) =>
            admitted === false && counts.slice(0, i).includes(true) && counts.slice(i + 1).includes(true),
        )
        if (refusedAt !== -1) tally.refusalInMiddle++
        first += size
      }
    }
  } finally {
    const keys = await client.keys(`${settings.keyPrefix}:*`)
    if (keys.length > 0) await client.del(...keys)
  }
}
