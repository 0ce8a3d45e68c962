// `pnpm --filter @saiku/bench bench:redis-quota [--rounds=N] [--batch=N] [--per-call]` (REDIS_URL set, `pnpm build` first): what the day and
// month quotas add to the Node process's CPU per decision of the Redis limiter, minute and hour against minute, hour,
// day and month. Redis runs the script in its own process; what is measured here is the client's side: building the
// call (three more arguments), writing it, and parsing a reply six numbers longer.
//
// Paired and interleaved: each round runs a batch of each, in an order that rotates round by round, and the
// difference is taken round by round, so that the host's moods fall on both alike. A control (minute and hour
// again, on other keys) says how finely the difference can be read. Process CPU (`process.cpuUsage`),
// not wall time: the wait for Redis is not this process's cost. Each batch keeps a fixed number of calls in flight,
// as a busy server does. The answer: the mean difference with its 95 % interval, in µs per decision.
//
// Batches are long (40,000 decisions): a batch's CPU swings by the collections that happen to fall in it (one
// scavenge more or less, and the collector's helper threads with it), a swing that does not grow with the batch;
// so the longer the batch, the finer the reading per decision. Ten times longer batches read about three times
// finer in the same time than more rounds of short ones.
import { Redis } from 'ioredis'
import type { WindowLimits } from '@saiku/core'
import { createRedisLimiter, type RedisLimiterBackend } from '@saiku/redis'
import { distanceOf, mean, type Distance } from './stats.js'

export interface RedisQuotaCost {
  readonly rounds: number
  readonly decisionsPerBatch: number
  /** Mean CPU µs per decision of each. */
  readonly minuteHourMicros: number
  readonly withQuotasMicros: number
  /** With quotas minus without, round by round. */
  readonly extra: Distance
  /** Minute and hour on other keys minus minute and hour: zero but for the measure's own error. */
  readonly control: Distance
  /** The target: the interval's upper end at most this. */
  readonly targetMicros: number
}

const MINUTE_HOUR: WindowLimits = { perMinute: 1e9, perHour: 1e9 }
const WITH_QUOTAS: WindowLimits = { perMinute: 1e9, perHour: 1e9, perDay: 1e9, perMonth: 1e9, monthStartDay: 31 }

/** CPU µs per decision of `decisions` calls, `inFlight` at a time, each for one of `tenants` tenants. */
async function batch(
  limiter: RedisLimiterBackend,
  limits: WindowLimits,
  decisions: number,
  inFlight: number,
  tenants: readonly string[],
): Promise<number> {
  let next = 0
  const before = process.cpuUsage()
  const worker = async () => {
    while (next < decisions) {
      const decision = await limiter.consume(tenants[next++ % tenants.length]!, limits)
      if (!decision.admitted) throw new Error('refused while measuring: the limits are meant to admit everything')
    }
  }
  await Promise.all(Array.from({ length: inFlight }, worker))
  const used = process.cpuUsage(before)
  return (used.user + used.system) / decisions
}

export async function measureRedisQuotaCost(
  redisUrl: string,
  rounds: number,
  decisionsPerBatch = 40_000,
  inFlight = 64,
  coalesce = true,
): Promise<RedisQuotaCost> {
  const client = new Redis(redisUrl, { enableOfflineQueue: false })
  await new Promise((resolve) => client.once('ready', resolve))
  const prefix = `saiku-bench-quota-${process.pid}-${Date.now()}`
  const limiters = {
    minuteHour: createRedisLimiter({ client, keyPrefix: `${prefix}-a`, coalesce }),
    control: createRedisLimiter({ client, keyPrefix: `${prefix}-c`, coalesce }),
    withQuotas: createRedisLimiter({ client, keyPrefix: `${prefix}-b`, coalesce }),
  }
  const limits = { minuteHour: MINUTE_HOUR, control: MINUTE_HOUR, withQuotas: WITH_QUOTAS }
  type Which = keyof typeof limiters
  const kinds: readonly Which[] = ['minuteHour', 'control', 'withQuotas']
  const tenants = Array.from({ length: 100 }, (_, i) => `tenant-${i}`)
  const run = (which: Which) => batch(limiters[which], limits[which], decisionsPerBatch, inFlight, tenants)
  // The compiler, the script cache and the heap's size settle first.
  for (let i = 0; i < 2; i++) for (const which of kinds) await run(which)
  const samples: Record<Which, number[]> = { minuteHour: [], control: [], withQuotas: [] }
  for (let round = 0; round < rounds; round++) {
    // Each takes each place in the order equally often, and every other cycle the order runs backwards.
    const rotated = kinds.map((_, i) => kinds[(i + round) % kinds.length]!)
    for (const which of Math.floor(round / kinds.length) % 2 === 0 ? rotated : rotated.reverse())
      samples[which].push(await run(which))
  }
  for (const name of await client.keys(`${prefix}-*`)) await client.del(name)
  client.disconnect()
  return {
    rounds,
    decisionsPerBatch,
    minuteHourMicros: mean(samples.minuteHour),
    withQuotasMicros: mean(samples.withQuotas),
    extra: distanceOf(samples.withQuotas.map((cpu, round) => cpu - samples.minuteHour[round]!)),
    control: distanceOf(samples.control.map((cpu, round) => cpu - samples.minuteHour[round]!)),
    targetMicros: 0.5,
  }
}

/** The lines `pnpm bench` prints for it. */
export function renderRedisQuotaCost(cost: RedisQuotaCost): string {
  const { meanMicros, plusMinusMicros, medianMicros } = cost.extra
  return [
    `Quotas on Redis, Node CPU per decision, ${cost.rounds} interleaved rounds of ${cost.decisionsPerBatch}:`,
    `minute and hour ${cost.minuteHourMicros.toFixed(2)} µs; with day and month ${cost.withQuotasMicros.toFixed(2)} µs; the quotas add ${meanMicros.toFixed(3)} ± ${plusMinusMicros.toFixed(3)} µs (95 % interval up to ${(meanMicros + plusMinusMicros).toFixed(3)} µs; median ${medianMicros.toFixed(3)}); control ${cost.control.meanMicros.toFixed(3)} ± ${cost.control.plusMinusMicros.toFixed(3)} µs`,
  ].join('\n')
}

const entry = process.argv[1] ?? ''
if (entry.endsWith('redis-quota.js') || entry.endsWith('redis-quota.ts')) {
  const redisUrl = process.env.REDIS_URL
  if (redisUrl === undefined) throw new Error('set REDIS_URL=redis://… to measure the Redis limiter')
  const roundsArg = process.argv.find((arg) => arg.startsWith('--rounds='))
  const rounds = roundsArg === undefined ? 100 : Number(roundsArg.slice('--rounds='.length))
  if (!Number.isInteger(rounds) || rounds < 2)
    throw new Error(`--rounds: expected a whole number from 2, got ${roundsArg}`)
  const numberArg = (name: string, fallback: number) => {
    const arg = process.argv.find((a) => a.startsWith(`--${name}=`))
    const value = arg === undefined ? fallback : Number(arg.slice(name.length + 3))
    if (!Number.isInteger(value) || value < 1) throw new Error(`--${name}: expected a whole number from 1, got ${arg}`)
    return value
  }
  // `--per-call`: one script call per decision, as before coalescing, to compare on the same machine.
  const cost = await measureRedisQuotaCost(
    redisUrl,
    rounds,
    numberArg('batch', 40_000),
    numberArg('in-flight', 64),
    !process.argv.includes('--per-call'),
  )
  const { meanMicros, plusMinusMicros, medianMicros } = cost.extra
  const upper = meanMicros + plusMinusMicros
  console.log(
    `Redis limiter, Node CPU per decision (${cost.rounds} interleaved rounds of ${cost.decisionsPerBatch}):\n` +
      `  minute + hour:               ${cost.minuteHourMicros.toFixed(2)} µs\n` +
      `  minute + hour + day + month: ${cost.withQuotasMicros.toFixed(2)} µs\n` +
      `  the quotas add:              ${meanMicros.toFixed(3)} ± ${plusMinusMicros.toFixed(3)} µs (95 %), median ${medianMicros.toFixed(3)} µs\n` +
      `  control (minute + hour again): ${cost.control.meanMicros.toFixed(3)} ± ${cost.control.plusMinusMicros.toFixed(3)} µs (95 %)\n` +
      `  upper end ${upper.toFixed(3)} µs: ${upper <= cost.targetMicros ? 'within' : 'over'} the ${cost.targetMicros} µs target`,
  )
}
