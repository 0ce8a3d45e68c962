// The usage recorder against a reference model: whatever the order of decisions, flushes, failed
// writes and writes still under way, each bucket's sum in the store is the model's, never less or more.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { HOUR_MS, USAGE_OUTCOMES, UsageRecorder, type UsageBucket, type UsageOutcome } from './usage-history.js'

type Command =
  | {
      readonly kind: 'record'
      readonly tenant: string
      readonly key: string | null
      readonly outcome: UsageOutcome
      readonly hour: number
    }
  | { readonly kind: 'flush'; readonly fails: boolean }
  /** A write that is still under way while `during` arrives, then succeeds or fails. */
  | { readonly kind: 'slowFlush'; readonly fails: boolean; readonly during: readonly Command[] }

const recordCommand = fc.record({
  kind: fc.constant('record' as const),
  tenant: fc.constantFrom('t1', 't2'),
  key: fc.constantFrom('k1', 'k2', 'k3', null),
  outcome: fc.constantFrom(...USAGE_OUTCOMES),
  hour: fc.integer({ min: 0, max: 3 }),
})
const flushCommand = fc.record({ kind: fc.constant('flush' as const), fails: fc.boolean() })
const commands = fc.array(
  fc.oneof(
    { weight: 6, arbitrary: recordCommand },
    { weight: 2, arbitrary: flushCommand },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('slowFlush' as const),
        fails: fc.boolean(),
        during: fc.array(fc.oneof(recordCommand, flushCommand), { maxLength: 6 }),
      }),
    },
  ),
  { maxLength: 60 },
)

const cell = (tenant: string, key: string | null, hour: number, outcome: string): string =>
  `${tenant}|${key}|${hour}|${outcome}`

/** A store whose next write can fail, or wait for a gate. */
class ModelStore {
  readonly sums = new Map<string, number>()
  failNext = false
  gate: Promise<void> | null = null
  writes = 0

  async addUsage(buckets: readonly UsageBucket[]): Promise<void> {
    const fails = this.failNext
    this.failNext = false
    const gate = this.gate
    this.gate = null
    this.writes++
    if (gate !== null) await gate
    if (fails) throw new Error('store down')
    for (const bucket of buckets)
      for (const outcome of USAGE_OUTCOMES) {
        if (bucket[outcome] === 0) continue
        const at = cell(bucket.tenantId, bucket.keyId, bucket.hourStartMs / HOUR_MS, outcome)
        this.sums.set(at, (this.sums.get(at) ?? 0) + bucket[outcome])
      }
  }

  async readUsage(): Promise<UsageBucket[]> {
    return []
  }
}

async function run(list: readonly Command[], maxPendingBuckets: number): Promise<void> {
  const store = new ModelStore()
  let nowMs = 0
  const recorder = new UsageRecorder({
    store,
    maxPendingBuckets,
    flushIntervalMs: 0,
    retentionMs: 0,
    now: () => nowMs,
    reportError: () => {},
  })
  const model = new Map<string, number>()
  let recorded = 0
  const apply = async (command: Command): Promise<void> => {
    if (command.kind === 'record') {
      nowMs = command.hour * HOUR_MS + 1_000
      recorder.record(command.tenant, command.key, command.outcome)
      const at = cell(command.tenant, command.key, command.hour, command.outcome)
      model.set(at, (model.get(at) ?? 0) + 1)
      recorded++
    } else if (command.kind === 'flush') {
      store.failNext = command.fails
      await recorder.flush().catch(() => {})
    } else {
      let open!: () => void
      store.gate = new Promise((resolve) => (open = resolve))
      store.failNext = command.fails
      const writing = recorder.flush().catch(() => {})
      // Let the write start (it is then waiting on the gate).
      await Promise.resolve()
      await Promise.resolve()
      const later: Promise<void>[] = []
      for (const inner of command.during) {
        if (inner.kind === 'record') await apply(inner)
        // A flush asked for during a write waits for it: started, not awaited.
        else later.push(apply(inner))
      }
      open()
      await writing
      await Promise.all(later)
    }
  }
  for (const command of list) await apply(command)
  store.failNext = false
  await recorder.flush()
  const { droppedDecisions, pendingBuckets } = recorder.stats()
  expect(pendingBuckets).toBe(0)
  const stored = [...store.sums.values()].reduce((sum, count) => sum + count, 0)
  // Nothing doubled, nothing lost but what was counted as dropped.
  expect(stored + droppedDecisions).toBe(recorded)
  if (droppedDecisions === 0) expect(new Map([...store.sums].sort())).toEqual(new Map([...model].sort()))
  else for (const [at, count] of store.sums) expect(count).toBeLessThanOrEqual(model.get(at) ?? 0)
}

describe('UsageRecorder against a model', () => {
  it('writes each bucket sum exactly once across failed and concurrent writes', async () => {
    await fc.assert(
      fc.asyncProperty(commands, (list) => run(list, 1_000)),
      { numRuns: 300 },
    )
  })

  it('under a tight bound, stores no more than was recorded, and stored plus dropped is every decision', async () => {
    await fc.assert(
      fc.asyncProperty(commands, (list) => run(list, 3)),
      { numRuns: 300 },
    )
  })
})
