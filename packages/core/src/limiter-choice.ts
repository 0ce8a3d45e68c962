import cluster from 'node:cluster'
import type { LimiterBackend } from './limiter.js'
import { createMemoryLimiter } from './memory-limiter.js'
import type { CoreMetrics } from './metrics.js'
import type { ResolvedOptions } from './options.js'
import { createRateLimiterBackend } from './rate-limiter-flexible.js'

/** The limiter an authenticator counts with, as its options chose it. */
export interface ChosenLimiter {
  /** Instrumented when metrics are on. */
  readonly limiter: LimiterBackend
  /**
   * Where the counts live: authenticators with the same identity count in the same
   * place, so a request one of them counted is not counted again by another.
   */
  readonly identity: object
  /** The deadline for one decision; 0 for an in-process backend, which cannot hang. */
  readonly timeoutMs: number
  /** Counts in this process while the backend fails open (`limiter.insurance`), or null. */
  readonly insurance: LimiterBackend | null
  /** The memory backend the options built, on the authenticator's clock: `consumeSync` may be given the time read. */
  readonly sharesClock: boolean
}

/**
 * `limiter.backend`, else rate-limiter-flexible through `limiter.factory`, else the
 * memory backend (bounded by `limiter.maxTenants`, on the authenticator's clock).
 */
export function chooseLimiter(options: ResolvedOptions, now: () => number, metrics: CoreMetrics | null): ChosenLimiter {
  const { backend, factory, keyPrefix, maxTenants, insurance } = options.limiter
  const memory = (): LimiterBackend => createMemoryLimiter({ maxTenants, now, windows: options.windows })
  const counting = backend ?? (factory === undefined ? memory() : createRateLimiterBackend({ factory, keyPrefix }))
  const identity = backend ?? (factory === undefined ? counting : factoryIdentity(factory, keyPrefix))
  const limiter = metrics === null ? counting : metrics.instrumentLimiter(counting)
  warnIfMemoryLimiterInCluster(limiter)
  return {
    limiter,
    identity,
    timeoutMs: limiter.inProcess === true ? 0 : options.limiter.timeoutMs,
    insurance: insurance === true ? memory() : insurance === false ? null : insurance,
    sharesClock: backend === undefined && factory === undefined,
  }
}

// The limiters that factories build: the same factory and prefix count in the same place.
const factoryIdentities = new WeakMap<object, Map<string, object>>()
function factoryIdentity(factory: object, keyPrefix: string): object {
  let byPrefix = factoryIdentities.get(factory)
  if (byPrefix === undefined) factoryIdentities.set(factory, (byPrefix = new Map<string, object>()))
  let identity = byPrefix.get(keyPrefix)
  if (identity === undefined) byPrefix.set(keyPrefix, (identity = {}))
  return identity
}

/**
 * Counting in this process's memory while being one of several workers lets each
 * worker admit the whole limit. Said once per process, at start-up.
 */
let warnedAboutCluster = false
function warnIfMemoryLimiterInCluster(limiter: LimiterBackend): void {
  const clustered = cluster.isWorker || process.env.NODE_APP_INSTANCE !== undefined
  if (warnedAboutCluster || limiter.inProcess !== true || !clustered) return
  warnedAboutCluster = true
  process.emitWarning(
    'Saiku auth keeps rate-limit counts in this process, but this process is one of several workers: each admits the full limit. Use a shared backend (e.g. @saiku/redis).',
    { code: 'SAIKU_MEMORY_LIMITER_IN_CLUSTER' },
  )
}
