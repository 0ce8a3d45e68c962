import { createNoopMeter, metrics as metricsApi, ValueType, type Attributes, type Counter, type Histogram, type MeterProvider } from '@opentelemetry/api'
import type { LimiterBackend } from './limiter.js'

/** The meter's name: instruments are created once, per authenticator, from the provider given or the global one. */
export const METER_NAME = '@saiku/core'

/** Bucket bounds, in seconds, for store and limiter calls: 0.1 ms (memory) to 2.5 s (past any deadline). */
const DURATION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

/** Most distinct attribute sets kept prebuilt: tiers × reasons stay far below it; beyond it sets are built per call. */
const MAX_PREBUILT = 1_000

export type KeyStoreOperation = 'findKey' | 'findTenant'
export type CacheName = 'key' | 'tenant'

/**
 * The core's instruments. Built only when a MeterProvider is registered (or
 * given): without one the authenticator holds null and pays nothing.
 */
export interface CoreMetrics {
  decision(status: number, reason: string, tier: string | null, enforced: boolean, tenantId: string | null): void
  failedAuthentication(reason: string, enforced: boolean): void
  cache(name: CacheName, hit: boolean): void
  /** `startedMs` from `performance.now()`. */
  keyStoreCall(operation: KeyStoreOperation, startedMs: number, ok: boolean): void
  /** The limiter with each call timed; the same object's counts, capabilities and identity otherwise. */
  instrumentLimiter<L extends LimiterBackend>(limiter: L): L
}

export interface MetricsSettings {
  readonly meterProvider: MeterProvider | undefined
  /** Adds `saiku.tenant.id` to decisions: one series per tenant, so off by default. */
  readonly tenantIds: boolean
}

export function createCoreMetrics(settings: MetricsSettings): CoreMetrics | null {
  const meter = (settings.meterProvider ?? metricsApi.getMeterProvider()).getMeter(METER_NAME)
  if (meter === createNoopMeter()) return null

  const decisions: Counter = meter.createCounter('saiku.decisions', {
    description: 'Decisions made, by status, reason, tier and whether they were enforced (report-only: false)',
    valueType: ValueType.INT,
  })
  const failures: Counter = meter.createCounter('saiku.authentication.failures', {
    description: 'Requests refused (or, report-only, reported) for their credentials: missing, malformed, unknown, revoked, expired, too many failures',
    valueType: ValueType.INT,
  })
  const cacheLookups: Counter = meter.createCounter('saiku.cache.lookups', {
    description: 'Key and tenant cache lookups on the request path, by cache and result (hit or miss)',
    valueType: ValueType.INT,
  })
  const keyStoreDuration: Histogram = meter.createHistogram('saiku.key_store.duration', {
    description: 'Duration of key store calls, by operation and outcome',
    unit: 's',
    advice: { explicitBucketBoundaries: DURATION_BUCKETS },
  })
  const limiterDuration: Histogram = meter.createHistogram('saiku.limiter.duration', {
    description: 'Duration of rate limiter calls, by operation and outcome',
    unit: 's',
    advice: { explicitBucketBoundaries: DURATION_BUCKETS },
  })

  const frozen = (attributes: Attributes): Attributes => Object.freeze(attributes)
  const cacheAttributes = {
    key: [frozen({ 'saiku.cache': 'key', 'saiku.cache.result': 'miss' }), frozen({ 'saiku.cache': 'key', 'saiku.cache.result': 'hit' })],
    tenant: [frozen({ 'saiku.cache': 'tenant', 'saiku.cache.result': 'miss' }), frozen({ 'saiku.cache': 'tenant', 'saiku.cache.result': 'hit' })],
  } as const
  const callAttributes = (operation: string) => [frozen({ 'saiku.operation': operation, 'saiku.outcome': 'error' }), frozen({ 'saiku.operation': operation, 'saiku.outcome': 'ok' })] as const
  const findKey = callAttributes('findKey')
  const findTenant = callAttributes('findTenant')
  const consume = callAttributes('consume')
  const peek = callAttributes('peek')

  // Attribute sets are prebuilt on first use, keyed by what varies, and bounded.
  const decisionSets = new Map<string, Attributes>()
  const failureSets = new Map<string, Attributes>()
  function prebuilt(sets: Map<string, Attributes>, key: string, build: () => Attributes): Attributes {
    let attributes = sets.get(key)
    if (attributes === undefined) {
      attributes = frozen(build())
      if (sets.size < MAX_PREBUILT) sets.set(key, attributes)
    }
    return attributes
  }

  const seconds = (startedMs: number): number => (performance.now() - startedMs) / 1000

  function timed<T>(pending: Promise<T>, startedMs: number, attributes: readonly [Attributes, Attributes]): Promise<T> {
    return pending.then(
      (value) => {
        limiterDuration.record(seconds(startedMs), attributes[1])
        return value
      },
      (error: unknown) => {
        limiterDuration.record(seconds(startedMs), attributes[0])
        throw error
      },
    )
  }

  return {
    decision(status, reason, tier, enforced, tenantId) {
      const key = `${enforced ? 1 : 0}${status}\u0000${reason}\u0000${tier ?? ''}`
      const attributes = prebuilt(decisionSets, key, () => ({
        'saiku.status': status,
        'saiku.reason': reason,
        ...(tier === null ? {} : { 'saiku.tier': tier }),
        'saiku.enforced': enforced,
      }))
      decisions.add(1, settings.tenantIds && tenantId !== null ? { ...attributes, 'saiku.tenant.id': tenantId } : attributes)
    },
    failedAuthentication(reason, enforced) {
      failures.add(1, prebuilt(failureSets, `${enforced ? 1 : 0}${reason}`, () => ({ 'saiku.reason': reason, 'saiku.enforced': enforced })))
    },
    cache(name, hit) {
      cacheLookups.add(1, cacheAttributes[name][hit ? 1 : 0])
    },
    keyStoreCall(operation, startedMs, ok) {
      keyStoreDuration.record(seconds(startedMs), (operation === 'findKey' ? findKey : findTenant)[ok ? 1 : 0])
    },
    instrumentLimiter(limiter) {
      const instrumented = Object.create(limiter) as typeof limiter & Record<string, unknown>
      // Own properties, so `in` checks and getters (trackedTenants) still reach the limiter itself.
      Object.defineProperty(instrumented, 'consume', {
        value: (...args: Parameters<LimiterBackend['consume']>) => {
          const started = performance.now()
          let pending: Promise<Awaited<ReturnType<LimiterBackend['consume']>>>
          try {
            pending = limiter.consume(...args)
          } catch (error) {
            limiterDuration.record(seconds(started), consume[0])
            throw error
          }
          return timed(pending, started, consume)
        },
      })
      if (limiter.consumeSync !== undefined) {
        const consumeSync = limiter.consumeSync.bind(limiter)
        Object.defineProperty(instrumented, 'consumeSync', {
          value: (...args: Parameters<NonNullable<LimiterBackend['consumeSync']>>) => {
            const started = performance.now()
            let ok = false
            try {
              const decision = consumeSync(...args)
              ok = true
              return decision
            } finally {
              limiterDuration.record(seconds(started), consume[ok ? 1 : 0])
            }
          },
        })
      }
      if (limiter.peek !== undefined) {
        const peekFn = limiter.peek.bind(limiter)
        Object.defineProperty(instrumented, 'peek', {
          value: (...args: Parameters<NonNullable<LimiterBackend['peek']>>) => {
            const started = performance.now()
            return timed(peekFn(...args), started, peek)
          },
        })
      }
      return instrumented
    },
  }
}
