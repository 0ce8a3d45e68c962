// What usage history adds to a decision: two authenticators on the same store, one recording usage
// and one not, deciding in interleaved batches whose order alternates round by round (the paired
// measure of quotas.ts); the per-round difference, with its 95 % interval. And the memory its
// buckets hold under 100,000 distinct keys in one hour, and under 100,000 more past the bound.
//
// `node bench/build.mjs && node bench/.build/usage-history.js [--quick]` runs it alone.
import { fileURLToPath } from 'node:url'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { createAuthenticator, MemoryKeyStore, type AuthRequest, type KeyStore, type KeyVerifier } from '@saiku/core'
import { paired } from './quotas.js'
import { distanceOf, median, type Distance } from './stats.js'
import { BENCH_TIERS, TENANT } from './variants.js'

/** The target: recording adds at most this to a decision (the 95 % interval's upper end). */
export const USAGE_HISTORY_TARGET_MICROS = 0.5

export interface UsageHistoryCost {
  readonly rounds: number
  readonly callsPerBatch: number
  /** µs per decision without usage history: cache hit, admitted. */
  readonly withoutMicros: number
  /** With minus without, µs per decision, round by round. */
  readonly difference: Distance
  readonly memory: {
    readonly distinctKeys: number
    readonly maxPendingBuckets: number
    /** Buckets held after the distinct keys, and after as many more past the bound. */
    readonly pendingBuckets: number
    readonly pendingAfterMore: number
    readonly droppedAfterMore: number
    /**
     * Heap the held buckets take at the bound, and per bucket: the heap after both sets of keys
     * minus the heap once the buckets were written, each after collections.
     */
    readonly heapBytes: number
    readonly bytesPerBucket: number
  }
}

function collector(): () => void {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  // Twice: what the first collection frees may hold more.
  return () => {
    gc()
    gc()
  }
}

const requestFor = (token: string): AuthRequest => ({
  headers: { host: '127.0.0.1', authorization: `Bearer ${token}` },
  method: 'GET',
  url: '/me/tenant',
  ip: '127.0.0.1',
})

export async function measureUsageHistoryCost(quick: boolean): Promise<UsageHistoryCost> {
  const rounds = quick ? 100 : 1_000
  const callsPerBatch = 2_000
  const store = new MemoryKeyStore({ tiers: BENCH_TIERS })
  store.putTenant({ ...TENANT, subscription: { status: 'active' } })
  const authenticator = async (usageHistory: boolean) => {
    // Entries fresh for the whole run: every call is the cache hit measured. No write during the run.
    const auth = createAuthenticator(store, {
      tiers: BENCH_TIERS,
      failedAuth: false,
      cache: { ttlMs: 3_600_000 },
      ...(usageHistory ? { usageHistory: { flushIntervalMs: 0 } } : {}),
    })
    const { key } = await auth.keys.create(TENANT.tenantId, { label: 'bench' })
    const request = requestFor(key)
    await auth.authenticate(request)
    return () => {
      const outcome = auth.check(request)
      if (outcome instanceof Promise) throw new Error('a cache hit awaited something')
    }
  }
  const pair = paired(await authenticator(false), await authenticator(true), rounds, callsPerBatch)
  return {
    rounds,
    callsPerBatch,
    withoutMicros: median(pair.a),
    difference: distanceOf(pair.b.map((b, round) => b - pair.a[round]!)),
    memory: await measureMemory(),
  }
}

/** 100,000 distinct keys of one tenant in one hour: a verifier that takes any token as a key of that ID. */
async function measureMemory(): Promise<UsageHistoryCost['memory']> {
  const distinctKeys = 100_000
  const maxPendingBuckets = 100_000
  const gc = collector()
  const verifier: KeyVerifier = {
    verify: (token) => ({
      ok: true,
      credential: {
        type: 'api_key',
        keyId: token,
        tenantId: TENANT.tenantId,
        label: 'bench',
        environment: 'live',
        permissions: [],
        expiresAt: null,
      },
    }),
  }
  // A store that discards what it is given: the heap with the buckets held, minus the heap once they are written.
  const memory = new MemoryKeyStore({ tiers: BENCH_TIERS })
  memory.putTenant({ ...TENANT, subscription: { status: 'active' } })
  const store: KeyStore = {
    findKey: (keyId) => memory.findKey(keyId),
    findTenant: (tenantId) => memory.findTenant(tenantId),
    createKey: (record) => memory.createKey(record),
    listKeys: (tenantId) => memory.listKeys(tenantId),
    revokeKey: (keyId, at) => memory.revokeKey(keyId, at),
    addUsage: async () => {},
    readUsage: async () => [],
  }
  const build = () =>
    createAuthenticator(store, {
      tiers: BENCH_TIERS,
      failedAuth: false,
      verifier,
      usageHistory: { flushIntervalMs: 0, maxPendingBuckets },
      onError: false,
    })
  const tokens = Array.from({ length: 2 * distinctKeys }, (_, i) => `key${String(i).padStart(9, '0')}`)
  const requests = tokens.map(requestFor)
  // Collections with turns of the event loop between them, until the heap stops shrinking.
  const heap = async (): Promise<number> => {
    let used = Infinity
    for (let i = 0; i < 10; i++) {
      gc()
      await new Promise((resolve) => setImmediate(resolve))
      const now = process.memoryUsage().heapUsed
      if (now >= used) break
      used = now
    }
    return used
  }
  // A first authenticator through the same keys and back: compiled code and caches are then what they stay.
  const warm = build()
  for (let i = 0; i < 2 * distinctKeys; i++) await warm.check(requests[i]!)
  await warm.flushUsageHistory()
  warm.close()
  const auth = build()
  for (let i = 0; i < distinctKeys; i++) await auth.check(requests[i]!)
  const pendingBuckets = auth.stats().pendingUsageBuckets!
  for (let i = distinctKeys; i < 2 * distinctKeys; i++) await auth.check(requests[i]!)
  const heldAfterMore = await heap()
  const stats = auth.stats()
  await auth.flushUsageHistory()
  const written = await heap()
  auth.close()
  return {
    distinctKeys,
    maxPendingBuckets,
    pendingBuckets,
    pendingAfterMore: stats.pendingUsageBuckets!,
    droppedAfterMore: stats.droppedUsageDecisions!,
    heapBytes: heldAfterMore - written,
    bytesPerBucket: (heldAfterMore - written) / stats.pendingUsageBuckets!,
  }
}

export function renderUsageHistoryCost(cost: UsageHistoryCost): string {
  const d = cost.difference
  const m = cost.memory
  const mb = (bytes: number) => (bytes / 1_048_576).toFixed(1)
  return [
    `Usage history, ${cost.rounds} interleaved rounds of ${cost.callsPerBatch} calls:`,
    `authenticate(), cache hit, admitted: ${cost.withoutMicros.toFixed(3)} µs without; +${d.meanMicros.toFixed(3)} ± ${d.plusMinusMicros.toFixed(3)} µs recording (95 % interval up to ${(d.meanMicros + d.plusMinusMicros).toFixed(3)} µs; median ${d.medianMicros.toFixed(3)})`,
    `${m.distinctKeys.toLocaleString('en-US')} distinct keys in one hour: ${m.pendingBuckets.toLocaleString('en-US')} buckets held; ${m.distinctKeys.toLocaleString('en-US')} more: ${m.pendingAfterMore.toLocaleString('en-US')} held (maxPendingBuckets ${m.maxPendingBuckets.toLocaleString('en-US')}), ${m.droppedAfterMore.toLocaleString('en-US')} dropped and reported; ${mb(m.heapBytes)} MB of heap (${Math.round(m.bytesPerBucket)} bytes a bucket)`,
  ].join('\n')
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(`${renderUsageHistoryCost(await measureUsageHistoryCost(process.argv.includes('--quick')))}\n`)
}
