import { randomUUID } from 'node:crypto'
import fc from 'fast-check'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { LimitDecision } from '@saiku/core'
import { LimiterModel } from '@saiku/test-support/limiter-model'
import { redisUrl } from '@saiku/test-support/services'
import { createRedisLimiterAt } from './limiter.js'

const TIERS = [
  { perMinute: 5, perHour: 12 },
  { perMinute: 3, perHour: 100, perDay: 7 },
]
const BAD_LIMITS = { perMinute: 1.5, perHour: 10 }
// The time the test scripts take as their last argument: not counted against maxBatchBytes.
const TIME_ARGUMENT_BYTES = 13

/*
 * Decisions arriving in any pattern (several in one turn, after a microtask, after the turn's end, after a timer, after
 * every answer), so that they go at once, gathered, alone or in full batches: each is decided as the model decides it
 * in arrival order, every one settles, and no call exceeds its bounds.
 */
describe.skipIf(redisUrl === undefined)('the Redis limiter under any arrival pattern, against the model', () => {
  let client: Redis
  let maxCallBytes = Infinity
  let scriptCalls = 0
  const oversized: number[] = []
  beforeAll(async () => {
    client = new Redis(redisUrl!, { enableOfflineQueue: false })
    const send = client.sendCommand.bind(client)
    client.sendCommand = (command, stream) => {
      if (command.name === 'evalsha' || command.name === 'eval') {
        scriptCalls++
        const bytes = command.args.reduce<number>((sum, arg) => sum + Buffer.byteLength(String(arg)), 0)
        if (bytes > maxCallBytes) oversized.push(bytes)
      }
      return send(command, stream)
    }
    await new Promise((resolve) => client.once('ready', resolve))
  })
  afterAll(() => client.disconnect())

  it('decides each as the model does in arrival order, settles every one, and keeps every call in its bounds', async () => {
    const decision = fc.record({
      tenant: fc.integer({ min: 0, max: 2 }),
      longKey: fc.boolean(),
      peek: fc.boolean(),
      cost: fc.integer({ min: 1, max: 3 }),
      tier: fc.integer({ min: 0, max: 1 }),
      badLimits: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, fc.constant(true)),
    })
    const step = fc.record({
      decisions: fc.array(decision, { maxLength: 5 }),
      then: fc.constantFrom('none', 'microtask', 'turn', 'answers', 'answers', 'timer'),
    })
    let sentInTheirCall = 0
    await fc.assert(
      fc.asyncProperty(
        fc.array(step, { minLength: 1, maxLength: 30 }),
        fc.constantFrom(1, 2, 3, 128),
        fc.constantFrom(400, 900, 65_536),
        fc.constantFrom(3, 1_000),
        async (steps, maxBatchSize, maxBatchBytes, maxPendingCalls) => {
          const keyPrefix = `arrival-${randomUUID()}`
          const now = 1_800_000_000_000
          const sizes: number[] = []
          const limiter = createRedisLimiterAt({
            client,
            keyPrefix,
            now: () => now,
            maxBatchSize,
            maxBatchBytes,
            maxPendingCalls,
            onBatch: (size) => sizes.push(size),
          })
          maxCallBytes = maxBatchBytes + TIME_ARGUMENT_BYTES
          oversized.length = 0
          const model = new LimiterModel({})
          const issued: Promise<LimitDecision>[] = []
          const checks: Promise<void>[] = []
          for (const { decisions, then } of steps) {
            for (const d of decisions) {
              const tenant = `t${d.tenant}${d.longKey ? 'x'.repeat(200) : ''}`
              const limits = d.badLimits ? BAD_LIMITS : TIERS[d.tier]!
              const refused = d.badLimits || limiter.pendingCalls >= maxPendingCalls
              const callsBefore = scriptCalls
              const got = d.peek ? limiter.peek(tenant, limits) : limiter.consume(tenant, limits, d.cost)
              if (scriptCalls > callsBefore) sentInTheirCall++
              issued.push(got)
              if (refused) {
                checks.push(
                  got.then(
                    () => expect.fail(`${JSON.stringify(d)} was decided, not refused`),
                    () => {},
                  ),
                )
              } else {
                const want = d.peek ? model.peek(tenant, limits, now) : model.consume(tenant, limits, now, d.cost)
                checks.push(got.then((decided) => expect(decided, JSON.stringify(d)).toStrictEqual(want)))
              }
            }
            if (then === 'microtask') await Promise.resolve()
            else if (then === 'turn') await new Promise((resolve) => setImmediate(resolve))
            else if (then === 'timer') await new Promise((resolve) => setTimeout(resolve, 1))
            else if (then === 'answers') await Promise.allSettled(issued)
          }
          await Promise.all(checks)
          expect(limiter.pendingCalls).toBe(0)
          expect(oversized).toEqual([])
          expect(Math.max(0, ...sizes)).toBeLessThanOrEqual(maxBatchSize)
          const keys = await client.keys(`${keyPrefix}:*`)
          if (keys.length > 0) await client.del(...keys)
        },
      ),
      { numRuns: 200 },
    )
    // The runs reached the paths that send in the call that made a decision: a full batch, or at once after lone calls.
    expect(sentInTheirCall).toBeGreaterThan(0)
  }, 120_000)
})
