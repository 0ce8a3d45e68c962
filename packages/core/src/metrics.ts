import { createRequire } from 'node:module'
import type { Attributes, Histogram, Meter, MeterProvider, ObservableResult } from '@opentelemetry/api'
import type { LimiterBackend } from './limiter.js'

type OpenTelemetryApi = typeof import('@opentelemetry/api')
// Loaded by the first authenticator with metrics on, not on import: `metrics: false` never loads it.
let api: OpenTelemetryApi | undefined
const loadApi = (): OpenTelemetryApi =>
  (api ??= createRequire(import.meta.url)('@opentelemetry/api') as OpenTelemetryApi)

/** The meter's name: instruments are created once, per authenticator, from the provider given or the global one. */
export const METER_NAME = '@saiku/core'

/** Bucket bounds, in seconds, for store and limiter calls: 0.1 ms (memory) to 2.5 s (past any deadline). */
const DURATION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]

/** One series of a counter: its attributes, built once, and its count so far. */
interface Cell {
  readonly attributes: Attributes
  value: number
}

/**
 * Counts kept in plain numbers on the request path and handed to the SDK when it
 * collects (an observable counter): a request pays a map lookup and an increment,
 * not the SDK's per-call attribute hashing.
 */
class Tally {
  readonly #cells = new Map<string, Cell>()

  cell(key: string, build: () => Attributes): Cell {
    let cell = this.#cells.get(key)
    if (cell === undefined) this.#cells.set(key, (cell = { attributes: Object.freeze(build()), value: 0 }))
    return cell
  }

  report(result: ObservableResult): void {
    for (const cell of this.#cells.values()) result.observe(cell.value, cell.attributes)
  }
}

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
  /** The limiter with each call timed (not an in-process one); the same object's counts and capabilities otherwise. */
  instrumentLimiter<L extends LimiterBackend>(limiter: L): L
}

/** The `metrics` option resolved (`null` in {@link ResolvedOptions.metrics} when it is `false`). */
export interface MetricsSettings {
  readonly meterProvider: MeterProvider | undefined
  /** Adds `saiku.tenant.id` to decisions: one series per tenant, so off by default. */
  readonly tenantIds: boolean
}

interface Instruments {
  readonly decisions: Tally
  readonly failures: Tally
  readonly cacheLookups: Tally
  readonly keyStoreDuration: Histogram
  readonly limiterDuration: Histogram
}

/**
 * One set of instruments per meter, whatever the number of authenticators using it
 * (an app may mount several): their counts add up in the same series.
 */
const sharedInstruments = new WeakMap<Meter, Instruments>()

function createInstruments(meter: Meter, { ValueType }: OpenTelemetryApi): Instruments {
  const decisions = new Tally()
  const failures = new Tally()
  const cacheLookups = new Tally()
  meter
    .createObservableCounter('saiku.decisions', {
      description: 'Decisions made, by status, reason, tier and whether they were enforced (report-only: false)',
      valueType: ValueType.INT,
    })
    .addCallback((result) => decisions.report(result))
  meter
    .createObservableCounter('saiku.authentication.failures', {
      description:
        'Requests refused (or, report-only, reported) for their credentials: missing, malformed, unknown, revoked, expired, too many failures',
      valueType: ValueType.INT,
    })
    .addCallback((result) => failures.report(result))
  meter
    .createObservableCounter('saiku.cache.lookups', {
      description: 'Key and tenant cache lookups on the request path, by cache and result (hit or miss)',
      valueType: ValueType.INT,
    })
    .addCallback((result) => cacheLookups.report(result))
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
  return { decisions, failures, cacheLookups, keyStoreDuration, limiterDuration }
}

export function createCoreMetrics(settings: MetricsSettings): CoreMetrics | null {
  const otel = loadApi()
  const meter = (settings.meterProvider ?? otel.metrics.getMeterProvider()).getMeter(METER_NAME)
  if (meter === otel.createNoopMeter()) return null

  let instruments = sharedInstruments.get(meter)
  if (instruments === undefined) sharedInstruments.set(meter, (instruments = createInstruments(meter, otel)))
  const { decisions, failures, cacheLookups, keyStoreDuration, limiterDuration } = instruments

  const frozen = (attributes: Attributes): Attributes => Object.freeze(attributes)
  const cacheCell = (cache: CacheName, result: 'hit' | 'miss') =>
    cacheLookups.cell(`${cache} ${result}`, () => ({ 'saiku.cache': cache, 'saiku.cache.result': result }))
  const cacheCells = {
    key: [cacheCell('key', 'miss'), cacheCell('key', 'hit')],
    tenant: [cacheCell('tenant', 'miss'), cacheCell('tenant', 'hit')],
  } as const
  // The last decision's cell, by what decides it: the common request repeats the one before.
  let lastDecision: { status: number; reason: string; tier: string | null; enforced: boolean; cell: Cell } | undefined
  const callAttributes = (operation: string) =>
    [
      frozen({ 'saiku.operation': operation, 'saiku.outcome': 'error' }),
      frozen({ 'saiku.operation': operation, 'saiku.outcome': 'ok' }),
    ] as const
  const findKey = callAttributes('findKey')
  const findTenant = callAttributes('findTenant')
  const consume = callAttributes('consume')
  const peek = callAttributes('peek')

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
      const withTenant = settings.tenantIds && tenantId !== null
      const last = lastDecision
      if (
        !withTenant &&
        last !== undefined &&
        last.status === status &&
        last.reason === reason &&
        last.tier === tier &&
        last.enforced === enforced
      ) {
        last.cell.value++
        return
      }
      const key = `${enforced ? 1 : 0} ${status} ${reason} ${tier ?? ''}${withTenant ? ` ${tenantId}` : ''}`
      const cell = decisions.cell(key, () => ({
        'saiku.status': status,
        'saiku.reason': reason,
        ...(tier === null ? {} : { 'saiku.tier': tier }),
        'saiku.enforced': enforced,
        ...(withTenant ? { 'saiku.tenant.id': tenantId } : {}),
      }))
      cell.value++
      if (!withTenant) lastDecision = { status, reason, tier, enforced, cell }
    },
    failedAuthentication(reason, enforced) {
      failures.cell(`${enforced ? 1 : 0} ${reason}`, () => ({ 'saiku.reason': reason, 'saiku.enforced': enforced }))
        .value++
    },
    cache(name, hit) {
      cacheCells[name][hit ? 1 : 0].value++
    },
    keyStoreCall(operation, startedMs, ok) {
      keyStoreDuration.record(seconds(startedMs), (operation === 'findKey' ? findKey : findTenant)[ok ? 1 : 0])
    },
    instrumentLimiter(limiter) {
      // An in-process backend answers in well under a microsecond and cannot wait on anything: timing it would cost more than the call.
      if (limiter.inProcess === true) return limiter
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
