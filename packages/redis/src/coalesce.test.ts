import { createHash, randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SaikuConfigError } from '@saiku/core'
import { redisUrl } from '@saiku/test-support/services'
import { createRedisLimiter } from './index.js'
import { BATCH_SCRIPT, CONSUME_SCRIPT } from './limiter.js'

const limits = { perMinute: 60, perHour: 1_000 }

describe.skipIf(redisUrl === undefined)('the decisions of one event-loop turn, coalesced', () => {
  // A client of its own, so that what it sends is this test's alone.
  let client: Redis
  const sent: { name: string; bytes: number; sha: string }[] = []
  beforeAll(async () => {
    client = new Redis(redisUrl!, { enableOfflineQueue: false })
    const send = client.sendCommand.bind(client)
    client.sendCommand = (command, stream) => {
      const bytes = command.args.reduce<number>((sum, arg) => sum + Buffer.byteLength(String(arg)), 0)
      sent.push({ name: command.name, bytes, sha: String(command.args[0]) })
      return send(command, stream)
    }
    await new Promise((resolve) => client.once('ready', resolve))
  })
  afterAll(async () => {
    const keys = await client.keys('coalesce-*')
    if (keys.length > 0) await client.del(...keys)
    client.disconnect()
  })
  const prefix = () => `coalesce-${randomUUID()}`
  const scriptCalls = () => sent.filter((c) => c.name === 'evalsha' || c.name === 'eval')

  it('sends 300 decisions of one turn as three calls of at most 128, decided in arrival order: exactly 60 admitted', async () => {
    const sizes: number[] = []
    const limiter = createRedisLimiter({ client, keyPrefix: prefix(), onBatch: (size) => sizes.push(size) })
    await limiter.consume('warm-up', limits)
    sizes.length = 0
    sent.length = 0
    const decisions = await Promise.all(Array.from({ length: 300 }, () => limiter.consume('t', limits)))
    expect(sizes).toEqual([128, 128, 44])
    expect(scriptCalls()).toHaveLength(3)
    // In arrival order: the first 60 are admitted, each with one less left, and the rest refused.
    expect(decisions.map((d) => d.admitted)).toEqual(Array.from({ length: 300 }, (_, i) => i < 60))
    expect(decisions.slice(0, 60).map((d) => d.minute.remaining)).toEqual(Array.from({ length: 60 }, (_, i) => 59 - i))
    expect(decisions[299]).toMatchObject({ admitted: false, minute: { remaining: 0, used: 60 } })
    expect(decisions[299]!.retryAfterMs).toBeGreaterThan(50_000)
    expect(limiter.pendingCalls).toBe(0)
  })

  it('sends a decision within the turn it arrived in, not before: what follows in the same turn joins it', async () => {
    const sizes: number[] = []
    const limiter = createRedisLimiter({ client, keyPrefix: prefix(), onBatch: (size) => sizes.push(size) })
    await limiter.consume('warm-up', limits)
    sizes.length = 0
    sent.length = 0
    const first = limiter.consume('a', limits)
    // Later in the same turn: after microtasks, and from a timer callback that runs before the turn's end.
    await Promise.resolve()
    const second = limiter.peek('b', limits)
    expect(scriptCalls()).toHaveLength(0)
    expect(limiter.pendingCalls).toBe(2)
    await new Promise((resolve) => setImmediate(resolve))
    expect(scriptCalls()).toHaveLength(1)
    expect(sizes).toEqual([2])
    expect((await first).minute.remaining).toBe(59)
    expect((await second).minute.remaining).toBe(60)
  })

  it('sends a decision alone in its turn by the per-call script, and two by the batch script', async () => {
    const sha1 = (lua: string) => createHash('sha1').update(lua).digest('hex')
    const limiter = createRedisLimiter({ client, keyPrefix: prefix() })
    await limiter.consume('warm-up', limits)
    sent.length = 0
    expect((await limiter.consume('a', limits)).minute.remaining).toBe(59)
    expect(scriptCalls().map((c) => c.sha)).toEqual([sha1(CONSUME_SCRIPT)])
    sent.length = 0
    const pair = await Promise.all([limiter.consume('a', limits), limiter.consume('b', limits)])
    expect(pair.map((d) => d.minute.remaining)).toEqual([58, 59])
    expect(scriptCalls().map((c) => c.sha)).toEqual([sha1(BATCH_SCRIPT)])
  })

  it('sends at once what finds nothing pending after four calls of one decision each, until a call carries two', async () => {
    const sizes: number[] = []
    const limiter = createRedisLimiter({ client, keyPrefix: prefix(), onBatch: (size) => sizes.push(size) })
    // One request at a time: each waits for its turn's end, then goes alone.
    for (let i = 0; i < 4; i++) {
      sent.length = 0
      const decided = limiter.consume('t', limits)
      expect(scriptCalls()).toHaveLength(0)
      await decided
      expect(scriptCalls()).toHaveLength(1)
    }
    // Four in a row went alone: the next goes at once, in the call that made it.
    sent.length = 0
    const atOnce = limiter.consume('t', limits)
    expect(scriptCalls()).toHaveLength(1)
    expect((await atOnce).minute.remaining).toBe(55)
    // Load begins: the first of the turn still goes at once, the two behind it gather into one call, and that ends it.
    sent.length = 0
    sizes.length = 0
    const burst = [limiter.consume('t', limits), limiter.consume('t', limits), limiter.consume('t', limits)]
    expect(scriptCalls()).toHaveLength(1)
    expect((await Promise.all(burst)).map((d) => d.minute.remaining)).toEqual([54, 53, 52])
    expect(sizes).toEqual([1, 2])
    sent.length = 0
    sizes.length = 0
    const next = [limiter.consume('t', limits), limiter.consume('t', limits)]
    expect(scriptCalls()).toHaveLength(0)
    expect((await Promise.all(next)).map((d) => d.minute.remaining)).toEqual([51, 50])
    expect(sizes).toEqual([2])
    expect(limiter.pendingCalls).toBe(0)
  })

  it('keeps each call within maxBatchBytes: long tenant keys split a turn into more calls', async () => {
    const sizes: number[] = []
    const maxBatchBytes = 4_096
    const limiter = createRedisLimiter({
      client,
      keyPrefix: prefix(),
      maxBatchBytes,
      onBatch: (size) => sizes.push(size),
    })
    await limiter.consume('warm-up', limits)
    sizes.length = 0
    sent.length = 0
    const tenants = Array.from({ length: 20 }, (_, i) => `${i}-${'x'.repeat(1_000)}`)
    const decisions = await Promise.all(tenants.map((tenant) => limiter.consume(tenant, limits)))
    expect(decisions.every((d) => d.admitted && d.minute.remaining === 59)).toBe(true)
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(20)
    expect(sizes.length).toBeGreaterThanOrEqual(5)
    for (const call of scriptCalls()) expect(call.bytes).toBeLessThanOrEqual(maxBatchBytes)
  })

  it('fails the decisions beyond maxPendingCalls at once, as before, and decides the rest', async () => {
    const sizes: number[] = []
    const limiter = createRedisLimiter({
      client,
      keyPrefix: prefix(),
      maxPendingCalls: 10,
      onBatch: (size) => sizes.push(size),
    })
    const settled = await Promise.allSettled(Array.from({ length: 25 }, () => limiter.consume('t', limits)))
    expect(settled.filter((s) => s.status === 'fulfilled')).toHaveLength(10)
    for (const refused of settled.filter((s) => s.status === 'rejected'))
      expect(refused.reason).toMatchObject({ name: 'SaikuStoreError', message: '10 Redis calls already pending' })
    expect(sizes).toEqual([10])
    expect(await client.hget(limiter.keyFor('t'), 'mc')).toBe('10')
  })

  it('decides a turn whose batch holds a bad limit: that decision throws before Redis is asked, the others count', async () => {
    const limiter = createRedisLimiter({ client, keyPrefix: prefix() })
    const settled = await Promise.allSettled([
      limiter.consume('t', limits),
      limiter.consume('t', { perMinute: 1.5, perHour: 10 }),
      limiter.consume('t', limits, 0),
      limiter.consume('t', limits, 2),
    ])
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled'])
    expect(settled[1]).toMatchObject({ reason: { name: 'SaikuConfigError', message: /limits\.perMinute/ } })
    expect(settled[2]).toMatchObject({ reason: { name: 'SaikuConfigError', message: /cost/ } })
    expect(await client.hget(limiter.keyFor('t'), 'mc')).toBe('3')
  })

  it('settles a decision that an onBatch hook asks for itself, and leaves nothing pending', async () => {
    for (const batchOf of [1, 3]) {
      let nested: Promise<unknown> | undefined
      const limiter = createRedisLimiter({
        client,
        keyPrefix: prefix(),
        // Once, while the turn's call goes out: a decision of the hook's own.
        onBatch: () => {
          nested ??= limiter.consume('t', limits)
        },
      })
      const decisions = await Promise.all(Array.from({ length: batchOf }, () => limiter.consume('t', limits)))
      expect(decisions.map((d) => d.minute.remaining)).toEqual(Array.from({ length: batchOf }, (_, i) => 59 - i))
      const outcome = await Promise.race([
        nested!.then((d) => (d as { minute: { remaining: number } }).minute.remaining),
        new Promise((resolve) => setTimeout(() => resolve('never settled'), 2_000)),
      ])
      expect(outcome).toBe(59 - batchOf)
      expect(limiter.pendingCalls).toBe(0)
    }
  })

  it('ignores an onBatch hook that throws or rejects: the decisions go on', async () => {
    for (const onBatch of [
      () => {
        throw new Error('metrics down')
      },
      () => Promise.reject(new Error('metrics down')),
    ]) {
      const limiter = createRedisLimiter({ client, keyPrefix: prefix(), onBatch })
      const decisions = await Promise.all([limiter.consume('t', limits), limiter.consume('t', limits)])
      expect(decisions.map((d) => d.minute.remaining)).toEqual([59, 58])
    }
  })

  it('sends one call per decision with coalesce: false, each told to onBatch as 1', async () => {
    const sizes: number[] = []
    const limiter = createRedisLimiter({
      client,
      keyPrefix: prefix(),
      coalesce: false,
      onBatch: (size) => sizes.push(size),
    })
    await limiter.consume('warm-up', limits)
    sent.length = 0
    sizes.length = 0
    const decisions = await Promise.all(Array.from({ length: 100 }, () => limiter.consume('t', limits)))
    expect(decisions.filter((d) => d.admitted)).toHaveLength(60)
    expect(scriptCalls()).toHaveLength(100)
    expect(sizes).toEqual(Array.from({ length: 100 }, () => 1))
  })

  it.each([
    ['maxBatchSize', { maxBatchSize: 0 }, /maxBatchSize: expected a positive integer, got 0/],
    ['maxBatchBytes', { maxBatchBytes: 1.5 }, /maxBatchBytes: expected a positive integer, got 1\.5/],
    ['maxPendingCalls', { maxPendingCalls: -1 }, /maxPendingCalls: expected a positive integer, got -1/],
    ['coalesce', { coalesce: 'yes' }, /coalesce: expected true or false, got "yes"/],
    ['onBatch', { onBatch: 5 }, /onBatch: expected a function, got 5/],
  ])('throws at construction for a bad %s, naming it', (_name, bad, message) => {
    const build = () => createRedisLimiter({ client, ...(bad as object) })
    expect(build).toThrow(SaikuConfigError)
    expect(build).toThrow(message)
  })
})
