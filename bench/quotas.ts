// What day and month quotas add to a decision on the in-process limiter: the same limiter deciding
// minute + hour, and minute + hour + day + month, in interleaved batches whose order alternates
// round by round; the per-round difference, with its 95 % interval. And the same pair through a
// whole authenticate() decision (cache hit, admitted), where the headers list two windows more.
//
// `node bench/build.mjs && node bench/.build/quotas.js [--quick]` runs it alone.
import { fileURLToPath } from 'node:url'
import {
  createAuthenticator,
  createMemoryLimiter,
  MemoryKeyStore,
  type AuthRequest,
  type WindowLimits,
} from '@saiku/core'
import { distanceOf, median, type Distance } from './stats.js'
import { TENANT } from './variants.js'

/** The target: the two windows add at most this to a memory decision (the 95 % interval's upper end). */
export const QUOTA_TARGET_MICROS = 0.5

export interface QuotaCost {
  /** Rounds, each one batch of each side. */
  readonly rounds: number
  readonly callsPerBatch: number
  /** µs per decision: minute and hour only. */
  readonly limiterMicros: number
  /** With day and month minus without, µs per decision, round by round. */
  readonly limiterDifference: Distance
  readonly authenticatorMicros: number
  readonly authenticatorDifference: Distance
}

const BIG = 1_000_000_000
const WITHOUT: WindowLimits = { perMinute: BIG, perHour: BIG }
const WITH: WindowLimits = { perMinute: BIG, perHour: BIG, perDay: BIG, perMonth: BIG, monthStartDay: 31 }
/** Tenants taken in turn: the limiter's map and list are walked as with real traffic, not one hot entry. */
const TENANTS = Array.from({ length: 1_000 }, (_, i) => `tenant-${i}`)

/** Batches of A and B in turns, A first in even rounds and B first in odd ones: µs per call of each, per round. */
export function paired(a: () => void, b: () => void, rounds: number, calls: number): { a: number[]; b: number[] } {
  const time = (fn: () => void): number => {
    const started = process.hrtime.bigint()
    for (let i = 0; i < calls; i++) fn()
    return Number(process.hrtime.bigint() - started) / 1000 / calls
  }
  for (let i = 0; i < 20; i++) {
    time(a)
    time(b)
  }
  const out = { a: [] as number[], b: [] as number[] }
  for (let round = 0; round < rounds; round++) {
    if (round % 2 === 0) {
      out.a.push(time(a))
      out.b.push(time(b))
    } else {
      out.b.push(time(b))
      out.a.push(time(a))
    }
  }
  return out
}

export async function measureQuotaCost(quick: boolean): Promise<QuotaCost> {
  const rounds = quick ? 100 : 1_000
  const callsPerBatch = 2_000
  // Two limiters on one clock that moves a millisecond a call: windows start and end as they do in service.
  let nowMs = Date.parse('2030-01-30T12:00:00Z')
  const without = createMemoryLimiter({ now: () => nowMs })
  const withQuotas = createMemoryLimiter({ now: () => nowMs })
  let i = 0
  let j = 0
  const limiter = paired(
    () => {
      without.consumeSync(TENANTS[i++ % TENANTS.length]!, WITHOUT, 1, nowMs++)
    },
    () => {
      withQuotas.consumeSync(TENANTS[j++ % TENANTS.length]!, WITH, 1, nowMs++)
    },
    rounds,
    callsPerBatch,
  )

  // The whole decision, cache hit and admitted: one tenant per authenticator, its tier with or without quotas.
  const authenticator = async (limits: WindowLimits) => {
    const tiers = { bench: limits }
    const store = new MemoryKeyStore({ tiers })
    store.putTenant({
      ...TENANT,
      tier: 'bench',
      subscription: { status: 'active', billingAnchor: new Date('2029-12-31T00:00:00Z') },
    })
    // Entries fresh for the whole run: every call is the cache hit measured.
    const auth = createAuthenticator(store, { tiers, failedAuth: false, cache: { ttlMs: 3_600_000 } })
    const { key } = await auth.keys.create(TENANT.tenantId, { label: 'bench' })
    const request: AuthRequest = {
      headers: { host: '127.0.0.1', authorization: `Bearer ${key}` },
      method: 'GET',
      url: '/me/tenant',
      ip: '127.0.0.1',
    }
    await auth.authenticate(request)
    return () => {
      const outcome = auth.check(request)
      if (outcome instanceof Promise) throw new Error('a cache hit awaited something')
    }
  }
  const whole = paired(
    await authenticator(WITHOUT),
    await authenticator({ ...WITH, monthStartDay: undefined }),
    rounds,
    callsPerBatch,
  )
  const differences = (pair: { a: number[]; b: number[] }) => pair.b.map((b, round) => b - pair.a[round]!)
  return {
    rounds,
    callsPerBatch,
    limiterMicros: median(limiter.a),
    limiterDifference: distanceOf(differences(limiter)),
    authenticatorMicros: median(whole.a),
    authenticatorDifference: distanceOf(differences(whole)),
  }
}

/** One line per pair: the difference's mean ± its 95 % half-width, and the interval's upper end. */
export function renderQuotaCost(cost: QuotaCost): string {
  const line = (name: string, base: number, d: Distance) =>
    `${name}: ${base.toFixed(3)} µs without; +${d.meanMicros.toFixed(3)} ± ${d.plusMinusMicros.toFixed(3)} µs with day and month (95 % interval up to ${(d.meanMicros + d.plusMinusMicros).toFixed(3)} µs; median ${d.medianMicros.toFixed(3)})`
  return [
    `Quotas, ${cost.rounds} interleaved rounds of ${cost.callsPerBatch} calls:`,
    line('memory limiter, consumeSync', cost.limiterMicros, cost.limiterDifference),
    line('authenticate(), cache hit, admitted', cost.authenticatorMicros, cost.authenticatorDifference),
  ].join('\n')
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(`${renderQuotaCost(await measureQuotaCost(process.argv.includes('--quick')))}\n`)
}
