import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
  type MetricReader,
} from '@opentelemetry/sdk-metrics'
import { describe, expect, it } from 'vitest'
import { SaikuConfigError } from './errors.js'
import { createMemoryLimiter } from './memory-limiter.js'
import type { LimiterBackend } from './limiter.js'
import { createAuthenticator } from './authenticator.js'
import { MemoryKeyStore } from './store.js'

const tiny = {
  tenantId: 't-tiny',
  tenantSlug: 'tiny',
  tier: 'enterprise',
  connectionName: 'w',
  subscription: { status: 'active' as const },
  limits: { perMinute: 2, perHour: 10 },
}
const request = (authorization?: string) => ({
  headers: authorization === undefined ? {} : { authorization },
  method: 'GET',
  url: '/me/tenant',
  ip: '127.0.0.1',
})

interface Point {
  attributes: Record<string, unknown>
  value: unknown
}

/** A real SDK MeterProvider with an in-memory reader: what an exporter would see. */
function sdk() {
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
  const reader: MetricReader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 })
  const meterProvider = new MeterProvider({ readers: [reader] })
  async function collect(): Promise<Map<string, Point[]>> {
    const { resourceMetrics } = await reader.collect()
    const byName = new Map<string, Point[]>()
    for (const scope of resourceMetrics.scopeMetrics) {
      for (const metric of scope.metrics)
        byName.set(
          metric.descriptor.name,
          metric.dataPoints.map((point) => ({ attributes: point.attributes, value: point.value })),
        )
    }
    return byName
  }
  return { meterProvider, collect, close: () => meterProvider.shutdown() }
}

const sumWhere = (points: Point[] | undefined, match: Record<string, unknown>): number =>
  (points ?? [])
    .filter((point) => Object.entries(match).every(([name, value]) => point.attributes[name] === value))
    .reduce((sum, point) => sum + (point.value as number), 0)

describe('metrics, through a real MeterProvider', () => {
  it('count decisions by status, reason and tier, failed authentications, cache lookups, and time store and limiter calls', async () => {
    const { meterProvider, collect, close } = sdk()
    // A backend outside this process, as Redis is: its calls are timed.
    const memory = createMemoryLimiter()
    const backend: LimiterBackend = {
      consume: (tenantKey, limits) => memory.consume(tenantKey, limits),
      peek: (tenantKey, limits) => memory.peek(tenantKey, limits),
    }
    const auth = createAuthenticator(new MemoryKeyStore({ tenants: [tiny] }), {
      limiter: { backend },
      metrics: { meterProvider },
    })
    const { key } = await auth.keys.create('t-tiny', { label: 'agent' })
    for (let i = 0; i < 3; i++) await auth.authenticate(request(`Bearer ${key}`))
    await auth.authenticate(request())
    await auth.authenticate(request('Bearer garbage'))
    await auth.usage('t-tiny')

    const seen = await collect()
    const decisions = seen.get('saiku.decisions')
    expect(
      sumWhere(decisions, {
        'saiku.status': 200,
        'saiku.reason': 'admitted',
        'saiku.tier': 'enterprise',
        'saiku.enforced': true,
      }),
    ).toBe(2)
    expect(
      sumWhere(decisions, { 'saiku.status': 429, 'saiku.reason': 'rate_limited', 'saiku.tier': 'enterprise' }),
    ).toBe(1)
    expect(sumWhere(decisions, { 'saiku.status': 401, 'saiku.reason': 'missing_credentials' })).toBe(1)
    expect(sumWhere(decisions, { 'saiku.status': 401, 'saiku.reason': 'malformed' })).toBe(1)
    expect(sumWhere(decisions, {})).toBe(5)
    // No tenant IDs by default; refusals before a tenant is known carry no tier.
    expect(decisions!.some((point) => 'saiku.tenant.id' in point.attributes)).toBe(false)
    expect(
      decisions!
        .filter((point) => point.attributes['saiku.status'] === 401)
        .every((point) => !('saiku.tier' in point.attributes)),
    ).toBe(true)

    const failures = seen.get('saiku.authentication.failures')
    expect(failures?.map((point) => [point.attributes['saiku.reason'], point.value]).sort()).toEqual([
      ['malformed', 1],
      ['missing_credentials', 1],
    ])
    // The first request misses both caches and loads from the store; the next two hit them.
    const cache = seen.get('saiku.cache.lookups')
    expect(sumWhere(cache, { 'saiku.cache': 'key', 'saiku.cache.result': 'miss' })).toBe(1)
    expect(sumWhere(cache, { 'saiku.cache': 'key', 'saiku.cache.result': 'hit' })).toBe(2)
    expect(sumWhere(cache, { 'saiku.cache': 'tenant', 'saiku.cache.result': 'miss' })).toBe(1)
    expect(sumWhere(cache, { 'saiku.cache': 'tenant', 'saiku.cache.result': 'hit' })).toBe(2)

    const count = (name: string, match: Record<string, unknown>) =>
      (seen.get(name) ?? [])
        .filter((point) => Object.entries(match).every(([k, v]) => point.attributes[k] === v))
        .reduce((sum, point) => sum + (point.value as { count: number }).count, 0)
    expect(count('saiku.key_store.duration', { 'saiku.operation': 'findKey', 'saiku.outcome': 'ok' })).toBe(1)
    // The first request's, and usage(), which reads the tenant afresh.
    expect(count('saiku.key_store.duration', { 'saiku.operation': 'findTenant', 'saiku.outcome': 'ok' })).toBe(2)
    expect(count('saiku.limiter.duration', { 'saiku.operation': 'consume', 'saiku.outcome': 'ok' })).toBe(3)
    expect(count('saiku.limiter.duration', { 'saiku.operation': 'peek', 'saiku.outcome': 'ok' })).toBe(1)
    const histogram = seen.get('saiku.limiter.duration')![0]!.value as {
      sum: number
      buckets: { boundaries: number[] }
    }
    expect(histogram.buckets.boundaries[0]).toBe(0.0001)
    await close()
  })

  it('time failing calls as errors, report-only refusals as not enforced, and add tenant IDs only when asked', async () => {
    const { meterProvider, collect, close } = sdk()
    const memory = createMemoryLimiter()
    let down = false
    const backend: LimiterBackend = {
      consume: (tenantKey, limits) => (down ? Promise.reject(new Error('down')) : memory.consume(tenantKey, limits)),
    }
    const auth = createAuthenticator(new MemoryKeyStore({ tenants: [tiny] }), {
      limiter: { backend },
      reportOnly: { limits: true, authentication: true },
      metrics: { meterProvider, tenantIds: true },
      onError: () => {},
    })
    const { key } = await auth.keys.create('t-tiny', { label: 'agent' })
    for (let i = 0; i < 3; i++) expect((await auth.authenticate(request(`Bearer ${key}`))).ok).toBe(true)
    expect(await auth.authenticate(request())).toMatchObject({
      ok: false,
      unverified: { status: 401, reason: 'missing_credentials' },
    })
    down = true
    expect((await auth.authenticate(request(`Bearer ${key}`))).ok).toBe(false)

    const seen = await collect()
    const decisions = seen.get('saiku.decisions')
    expect(sumWhere(decisions, { 'saiku.status': 429, 'saiku.enforced': false, 'saiku.tenant.id': 't-tiny' })).toBe(1)
    expect(sumWhere(decisions, { 'saiku.status': 401, 'saiku.enforced': false })).toBe(1)
    expect(
      sumWhere(decisions, {
        'saiku.status': 503,
        'saiku.reason': 'limiter_unavailable',
        'saiku.enforced': true,
        'saiku.tier': 'enterprise',
      }),
    ).toBe(1)
    expect(
      sumWhere(seen.get('saiku.authentication.failures'), {
        'saiku.reason': 'missing_credentials',
        'saiku.enforced': false,
      }),
    ).toBe(1)
    const errors = (seen.get('saiku.limiter.duration') ?? []).filter(
      (point) => point.attributes['saiku.outcome'] === 'error',
    )
    expect(errors.map((point) => (point.value as { count: number }).count)).toEqual([1])
    await close()
  })

  it('record nothing, and leave the limiter as it is, without a MeterProvider or when turned off', async () => {
    const { meterProvider, collect, close } = sdk()
    const limiter = createMemoryLimiter()
    const off = createAuthenticator(new MemoryKeyStore({ tenants: [tiny] }), {
      limiter: { backend: limiter },
      metrics: false,
    })
    const { key } = await off.keys.create('t-tiny', { label: 'agent' })
    await off.authenticate(request(`Bearer ${key}`))
    expect((await collect()).size).toBe(0)
    // With the global no-op provider, the authenticator holds no instruments: counts still come from the limiter.
    const global = createAuthenticator(new MemoryKeyStore({ tenants: [tiny] }), { limiter: { backend: limiter } })
    expect(global.stats().countedTenants).toBe(1)
    expect(() => createAuthenticator(new MemoryKeyStore(), { metrics: { meterProvider: {} as never } })).toThrow(
      SaikuConfigError,
    )
    expect(() => createAuthenticator(new MemoryKeyStore(), { metrics: { tenantIds: 'yes' as never } })).toThrow(
      'metrics.tenantIds: expected a boolean',
    )
    expect(() => createAuthenticator(new MemoryKeyStore(), { metrics: { provider: meterProvider } as never })).toThrow(
      'metrics.provider: expected a known option',
    )
    await close()
  })

  it('leave the in-process limiter untimed, with its stats, and add up the decisions of every authenticator on one provider', async () => {
    const { meterProvider, collect, close } = sdk()
    const auth = createAuthenticator(new MemoryKeyStore({ tenants: [tiny] }), { metrics: { meterProvider } })
    const { key } = await auth.keys.create('t-tiny', { label: 'agent' })
    await auth.authenticate(request(`Bearer ${key}`))
    expect(auth.stats().countedTenants).toBe(1)
    // A second authenticator on the same provider (a second mount) adds to the same series.
    const second = createAuthenticator(new MemoryKeyStore({ tenants: [tiny] }), { metrics: { meterProvider } })
    const { key: secondKey } = await second.keys.create('t-tiny', { label: 'agent' })
    await second.authenticate(request(`Bearer ${secondKey}`))
    const seen = await collect()
    expect(seen.get('saiku.limiter.duration') ?? []).toEqual([])
    expect(sumWhere(seen.get('saiku.decisions'), { 'saiku.status': 200 })).toBe(2)
    expect(sumWhere(seen.get('saiku.cache.lookups'), { 'saiku.cache': 'key', 'saiku.cache.result': 'miss' })).toBe(2)
    await close()
  })
})
