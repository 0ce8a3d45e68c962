// In-process costs: one authenticate() decision, no HTTP; and Redis commands per admitted request.
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { RateLimiterRedis } from 'rate-limiter-flexible'
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics'
import {
  createAuthenticator,
  createKeyManager,
  MemoryKeyStore,
  mintApiKey,
  type AuthRequest,
  type SaikuOptions,
} from '@saiku/core'
import { createRedisLimiter } from '@saiku/redis'
import { BENCH_TIERS, TENANT } from './variants.js'

export interface DecisionCost {
  readonly name: string
  readonly nsPerDecision: number
  readonly samples: number
}

async function setup(options: SaikuOptions = {}) {
  const store = new MemoryKeyStore({ tiers: { ...BENCH_TIERS, tiny: { perMinute: 1, perHour: 1 } } })
  store.putTenant({ ...TENANT, subscription: { status: 'active' } })
  store.putTenant({ ...TENANT, tenantId: 'tiny', tenantSlug: 'tiny', tier: 'tiny', subscription: { status: 'active' } })
  const auth = createAuthenticator(store, { tiers: { ...BENCH_TIERS, tiny: { perMinute: 1, perHour: 1 } }, ...options })
  const keys = createKeyManager(store)
  return {
    store,
    auth,
    key: (await keys.create(TENANT.tenantId, { label: 'bench' })).key,
    tinyKey: (await keys.create('tiny', { label: 'tiny' })).key,
  }
}

const request = (key: string): AuthRequest => ({
  headers: { host: '127.0.0.1', authorization: `Bearer ${key}`, accept: '*/*' },
  rawHeaders: ['Host', '127.0.0.1', 'Authorization', `Bearer ${key}`, 'Accept', '*/*'],
  method: 'GET',
  url: '/me/tenant',
  ip: '127.0.0.1',
})

/** ns per decision: the median batch of each path. */
export async function measureDecisions(quick: boolean): Promise<DecisionCost[]> {
  const hit = await setup()
  // Metrics on: a real SDK provider with a reader, as an app exporting to Prometheus has. Off (above): no provider.
  const meterProvider = new MeterProvider({
    readers: [
      new PeriodicExportingMetricReader({
        exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE),
        exportIntervalMillis: 3_600_000,
      }),
    ],
  })
  const measured = await setup({ metrics: { meterProvider } })
  const measuredRequest = request(measured.key)
  const miss = await setup({ cache: { ttlMs: 0 } })
  const hitRequest = request(hit.key)
  const missRequest = request(miss.key)
  const garbageRequest = request(mintApiKey().key.slice(0, -1) + '!')
  // Well formed, right checksum, no such key: answered from the negative cache after the first time.
  const unknownRequest = request(mintApiKey().key)
  await hit.auth.authenticate(unknownRequest)
  const refusedRequest = request(hit.tinyKey)
  await hit.auth.authenticate(refusedRequest)
  const rolling = await setup({ windows: 'rolling' })
  const rollingRequest = request(rolling.key)
  const rollingRefused = request(rolling.tinyKey)
  await rolling.auth.authenticate(rollingRefused)
  // Per-route cost: n units from both windows, or a free route that reads the counts (peek) instead.
  const costly = await setup({ cost: () => 2 })
  const costlyRequest = request(costly.key)
  const free = await setup({ cost: () => 0 })
  const freeRequest = request(free.key)
  // Report-only limits: a tenant over its limits, decided and reported, then admitted.
  const reporting = await setup({ reportOnly: { limits: true } })
  const reportedRequest = request(reporting.tinyKey)
  await reporting.auth.authenticate(reportedRequest)
  // check() is what the adapters call: a decision returned at once when nothing has to be awaited.
  const cases: [string, () => unknown][] = [
    ['cache hit (admitted)', () => hit.auth.check(hitRequest)],
    ['cache hit (admitted), metrics on', () => measured.auth.check(measuredRequest)],
    ['cache miss (MemoryKeyStore)', () => miss.auth.check(missRequest)],
    ['garbage token (checksum, no store)', () => hit.auth.check(garbageRequest)],
    ['unknown key (checksum ok, cached as unknown)', () => hit.auth.check(unknownRequest)],
    ['refused (429)', () => hit.auth.check(refusedRequest)],
    ['cache hit (admitted), rolling windows', () => rolling.auth.check(rollingRequest)],
    ['refused (429), rolling windows', () => rolling.auth.check(rollingRefused)],
    ['cache hit (admitted), cost 2', () => costly.auth.check(costlyRequest)],
    ['cache hit (admitted), cost 0', () => free.auth.check(freeRequest)],
    ['over the limit, report-only (admitted)', () => reporting.auth.check(reportedRequest)],
  ]
  // Batches of calls timed together: a clock read per call would cost as much as the fastest decisions.
  // A decision that returns a promise (a cache miss) is awaited inside its batch.
  const batches = quick ? 30 : 200
  const callsPerBatch = 1_000
  const results: DecisionCost[] = []
  for (const [name, fn] of cases) {
    for (let i = 0; i < 20 * callsPerBatch; i++) {
      const outcome = fn()
      if (outcome instanceof Promise) await outcome
    }
    const nsPerCall: number[] = []
    for (let batch = 0; batch < batches; batch++) {
      const started = process.hrtime.bigint()
      for (let i = 0; i < callsPerBatch; i++) {
        const outcome = fn()
        if (outcome instanceof Promise) await outcome
      }
      nsPerCall.push(Number(process.hrtime.bigint() - started) / callsPerBatch)
    }
    nsPerCall.sort((a, b) => a - b)
    results.push({ name, nsPerDecision: nsPerCall[nsPerCall.length >> 1]!, samples: batches * callsPerBatch })
  }
  await meterProvider.shutdown()
  return results
}

export interface RedisCost {
  readonly roundTripsPerRequest: number
  readonly commandsPerRequest: number
  readonly rolling: { readonly roundTripsPerRequest: number; readonly commandsPerRequest: number }
  readonly rateLimiterFlexibleTwoLimiters: {
    readonly roundTripsPerRequest: number
    readonly commandsPerRequest: number
  }
}

async function commandStats(client: Redis): Promise<Record<string, number>> {
  const stats = await client.info('commandstats')
  return Object.fromEntries([...stats.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)].map((m) => [m[1]!, Number(m[2])]))
}

/** Commands per admitted request, ours and rate-limiter-flexible's two-limiter setup, from INFO commandstats. */
export async function measureRedisCommands(redisUrl: string, requests: number): Promise<RedisCost> {
  const client = new Redis(redisUrl, { enableOfflineQueue: false })
  await new Promise((resolve) => client.once('ready', resolve))
  async function count(options: SaikuOptions): Promise<{ roundTripsPerRequest: number; commandsPerRequest: number }> {
    const { auth, key } = await setup(options)
    const req = request(key)
    await auth.authenticate(req)
    await client.config('RESETSTAT')
    for (let i = 0; i < requests; i++) {
      const decision = await auth.authenticate(req)
      if (!decision.ok) throw new Error(`refused while counting Redis commands: ${decision.status}`)
    }
    const calls = await commandStats(client)
    delete calls.config
    delete calls.info
    const roundTrips = (calls.evalsha ?? 0) + (calls.eval ?? 0)
    const total = Object.values(calls).reduce((sum, n) => sum + n, 0)
    auth.close()
    return { roundTripsPerRequest: roundTrips / requests, commandsPerRequest: total / requests }
  }
  const prefix = `saiku-bench-${process.pid}-${Date.now()}`
  const ours = await count({ limiter: { backend: createRedisLimiter({ client, keyPrefix: prefix }) } })
  const rolling = await count({
    windows: 'rolling',
    limiter: { backend: createRedisLimiter({ client, keyPrefix: `${prefix}-rolling`, windows: 'rolling' }) },
  })
  // The baseline: a stack of two rate-limiter-flexible limiters, each consumed once per request.
  const limiters = [60, 3600].map(
    (duration) =>
      new RateLimiterRedis({ storeClient: client, points: 1e9, duration, keyPrefix: `${prefix}-rlf:${duration}` }),
  )
  for (const limiter of limiters) await limiter.consume('warm-up')
  await client.config('RESETSTAT')
  for (let i = 0; i < requests; i++) for (const limiter of limiters) await limiter.consume(TENANT.tenantId)
  const calls = await commandStats(client)
  delete calls.config
  delete calls.info
  const flexible = {
    roundTripsPerRequest: ((calls.evalsha ?? 0) + (calls.eval ?? 0)) / requests,
    commandsPerRequest: Object.values(calls).reduce((sum, n) => sum + n, 0) / requests,
  }
  client.disconnect()
  return { ...ours, rolling, rateLimiterFlexibleTwoLimiters: flexible }
}

export interface FloodResult {
  readonly count: number
  readonly cap: number
  readonly heapGrowthMb: number
  readonly stats: { readonly cachedKeys: number; readonly countedClients: number | null }
  readonly limiterTenants: number
}

/** Distinct random keys from distinct addresses, and distinct tenants, with the default caps (100000 clients and tenants, 10000 keys). */
export async function measureFlood(count: number): Promise<FloodResult> {
  const fixture = fileURLToPath(new URL('../../test/fixtures/flood.mjs', import.meta.url))
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--expose-gc', fixture, String(count), '10000', 'default'],
    { maxBuffer: 1_000_000 },
  )
  return JSON.parse(stdout) as FloodResult
}
