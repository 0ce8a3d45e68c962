// `pnpm --filter @saiku/bench bench:redis-coalescing [--rounds=N]` (REDIS_URL set, `pnpm build` first): the Node
// process's CPU per decision of the Redis limiter as it ships (coalesced) against one script call per decision
// (`coalesce: false`), with 1, 8 and 32 decisions in flight. At 1 nothing can be gathered, and the question is what
// coalescing costs a request served alone; at 8 and 32, what it saves.
//
// Paired and interleaved, as the quota measure (redis-quota.ts): each round runs a batch of each in an order that
// alternates round by round, the difference is taken round by round, and it is given as its mean with a 95 % interval.
// Process CPU (`process.cpuUsage`), not wall time: the wait for Redis is not this process's cost.
import { Redis } from 'ioredis'
import type { WindowLimits } from '@saiku/core'
import { createRedisLimiter, type RedisLimiterBackend } from '@saiku/redis'
import { distanceOf, mean } from './stats.js'

const LIMITS: WindowLimits = { perMinute: 1e9, perHour: 1e9 }

async function batch(limiter: RedisLimiterBackend, decisions: number, inFlight: number): Promise<number> {
  const tenants = Array.from({ length: 100 }, (_, i) => `tenant-${i}`)
  let next = 0
  const before = process.cpuUsage()
  const worker = async () => {
    while (next < decisions) await limiter.consume(tenants[next++ % tenants.length]!, LIMITS)
  }
  await Promise.all(Array.from({ length: inFlight }, worker))
  const used = process.cpuUsage(before)
  return (used.user + used.system) / decisions
}

const redisUrl = process.env.REDIS_URL
if (redisUrl === undefined) throw new Error('set REDIS_URL=redis://… to measure the Redis limiter')
const roundsArg = process.argv.find((arg) => arg.startsWith('--rounds='))
const rounds = roundsArg === undefined ? 16 : Number(roundsArg.slice('--rounds='.length))
if (!Number.isInteger(rounds) || rounds < 2)
  throw new Error(`--rounds: expected a whole number from 2, got ${roundsArg}`)
const client = new Redis(redisUrl, { enableOfflineQueue: false })
await new Promise((resolve) => client.once('ready', resolve))
const prefix = `saiku-bench-coalescing-${process.pid}-${Date.now()}`
try {
  for (const inFlight of [1, 8, 32]) {
    // Fresh limiters for each: what one learnt of its traffic (a run of lone calls) is not the next one's.
    const coalesced = createRedisLimiter({ client, keyPrefix: `${prefix}-a` })
    const perCall = createRedisLimiter({ client, keyPrefix: `${prefix}-b`, coalesce: false })
    const decisions = inFlight === 1 ? 5_000 : 20_000
    await batch(coalesced, decisions, inFlight)
    await batch(perCall, decisions, inFlight)
    const samples = { coalesced: [] as number[], perCall: [] as number[] }
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? (['coalesced', 'perCall'] as const) : (['perCall', 'coalesced'] as const)
      for (const which of order)
        samples[which].push(await batch(which === 'coalesced' ? coalesced : perCall, decisions, inFlight))
    }
    const difference = distanceOf(samples.coalesced.map((cpu, round) => cpu - samples.perCall[round]!))
    console.log(
      `${inFlight} in flight: coalesced ${mean(samples.coalesced).toFixed(2)} µs a decision, one call per decision ` +
        `${mean(samples.perCall).toFixed(2)} µs; coalesced − one call ${difference.meanMicros.toFixed(2)} ± ` +
        `${difference.plusMinusMicros.toFixed(2)} µs (95 %, ${rounds} rounds of ${decisions})`,
    )
  }
} finally {
  for (const name of await client.keys(`${prefix}-*`)) await client.del(name)
  client.disconnect()
}
