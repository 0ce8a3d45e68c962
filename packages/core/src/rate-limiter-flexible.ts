import { createRequire } from 'node:module'
import type { RateLimiterAbstract, RateLimiterRes } from 'rate-limiter-flexible'
import { asStoreError, SaikuConfigError, SaikuStoreError } from './errors.js'
import type { LimitDecision, LimiterBackend, WindowName, WindowState } from './limiter.js'
import type { WindowLimits } from './tiers.js'

export interface RateLimiterFactoryOptions {
  readonly keyPrefix: string
  readonly points: number
  /** Window length in seconds: 60 or 3600. */
  readonly duration: number
}

/**
 * Builds one rate-limiter-flexible limiter per window, e.g.
 * `(o) => new RateLimiterRedis({ storeClient: redis, ...o })`.
 */
export type RateLimiterFactory = (options: RateLimiterFactoryOptions) => RateLimiterAbstract

export interface RateLimiterBackendOptions {
  readonly factory?: RateLimiterFactory | undefined
  readonly keyPrefix?: string | undefined
  /**
   * A request that lost a race with another process gives its point back only
   * while its window has at least this long to run, so a give-back can never land
   * in the next window and open it at -1. Default 1000; make it at least the
   * backend's worst latency.
   */
  readonly giveBackMarginMs?: number | undefined
  /**
   * Decisions this process may have waiting at once; beyond it a call fails at
   * once instead of queueing behind a stalled store. Default 1000.
   */
  readonly maxPendingCalls?: number | undefined
}

// Limits are compared here, per tenant, so the limiters only count: a tier change
// then applies on the next request and never resets a count (one limiter per tier would).
const COUNT_ONLY_POINTS = Number.MAX_SAFE_INTEGER
const MINUTE_MS = 60_000
const HOUR_MS = 3_600_000

/** What the options and this backend answer limits with a quota: rate-limiter-flexible has no calendar windows. */
export const QUOTAS_NEED_ANOTHER_BACKEND =
  'no perDay or perMonth with limiter.factory (rate-limiter-flexible counts windows from a first request, not calendar days and months; quotas need the memory backend or @saiku/redis)'

/** A tenant's own limits with a quota reach this backend only at request time: a limiter failure, never a skipped quota. */
function quotasRefused(limits: WindowLimits): Promise<never> | null {
  if (limits.perDay === undefined && limits.perMonth === undefined) return null
  return Promise.reject(
    new SaikuStoreError(
      'limiter',
      `the rate-limiter-flexible backend cannot count quotas: limits set ${limits.perDay === undefined ? 'perMonth' : 'perDay'}; use the memory backend or @saiku/redis`,
    ),
  )
}

// Loaded on first use, not on import: it brings some forty backend classes that
// only a `limiter.factory` user (who loads it anyway) or this backend needs.
let rateLimiterFlexible: typeof import('rate-limiter-flexible') | undefined
const loadRateLimiterFlexible = (): typeof import('rate-limiter-flexible') =>
  (rateLimiterFlexible ??= createRequire(import.meta.url)(
    'rate-limiter-flexible',
  ) as typeof import('rate-limiter-flexible'))

const memoryFactory: RateLimiterFactory = (options) => new (loadRateLimiterFlexible().RateLimiterMemory)(options)

/** What a window holds now: a missing, ended or TTL-less result holds nothing. */
function liveCount(res: RateLimiterRes | null | undefined): number {
  return res == null || !(res.msBeforeNext > 0) ? 0 : Math.max(0, res.consumedPoints)
}

function windowState(
  window: WindowName,
  limit: number,
  count: number,
  res: RateLimiterRes | null | undefined,
  durationMs: number,
): WindowState {
  // A missing or negative TTL (an ended window, clock skew, a key without expiry) must never promise an earlier retry.
  const resetMs = res == null || !(res.msBeforeNext > 0) ? durationMs : res.msBeforeNext
  return { window, limit, remaining: Math.max(0, limit - count), used: count, resetMs: Math.max(1, resetMs) }
}

/** `minuteRoom`, `hourRoom`: whether each window has room for the request's cost. */
function decision(minuteRoom: boolean, hourRoom: boolean, minute: WindowState, hour: WindowState): LimitDecision {
  if (minuteRoom && hourRoom) return { admitted: true, minute, hour, retryAfterMs: 0 }
  const retryAfterMs = Math.max(minuteRoom ? 0 : minute.resetMs, hourRoom ? 0 : hour.resetMs)
  return { admitted: false, minute, hour, retryAfterMs }
}

/**
 * A backend over rate-limiter-flexible (`limiter.factory`): two of its limiters, one per
 * window, from the factory given (RateLimiterMemory without one). The default backend
 * is `createMemoryLimiter`; this one reaches the stores rate-limiter-flexible supports.
 *
 * Each decision reads both windows first and counts only when both have room, so
 * a refused request writes nothing and starts no window. Decisions for one tenant
 * are made one at a time in this process, so they are exact here; processes
 * sharing a store can still race between the read and the count, and the loser
 * gives its points back (refused).
 */
export function createRateLimiterBackend(options: RateLimiterBackendOptions = {}): LimiterBackend {
  const factory = options.factory ?? memoryFactory
  const keyPrefix = options.keyPrefix ?? 'saiku'
  const minute = factory({ keyPrefix: `${keyPrefix}:minute`, points: COUNT_ONLY_POINTS, duration: 60 })
  const hour = factory({ keyPrefix: `${keyPrefix}:hour`, points: COUNT_ONLY_POINTS, duration: 3600 })
  for (const [name, limiter] of [
    ['minute', minute],
    ['hour', hour],
  ] as const) {
    if (
      typeof limiter?.consume !== 'function' ||
      typeof limiter.reward !== 'function' ||
      typeof limiter.get !== 'function'
    ) {
      throw new SaikuConfigError(`limiter.factory (${name})`, 'a rate-limiter-flexible limiter', limiter)
    }
  }
  const giveBackMarginMs = options.giveBackMarginMs ?? 1_000
  const { RateLimiterRes } = loadRateLimiterFlexible()
  const maxPendingCalls = options.maxPendingCalls ?? 1_000

  // A limiter built with its own small `points` rejects with its result; that is still a count.
  function counted(promise: Promise<RateLimiterRes>): Promise<RateLimiterRes> {
    return promise.catch((error: unknown) => {
      if (error instanceof RateLimiterRes) return error
      throw asStoreError(error, 'limiter', 'rate limiter backend failed')
    })
  }

  function count(limiter: RateLimiterAbstract, tenantKey: string, cost: number): Promise<RateLimiterRes> {
    try {
      return counted(limiter.consume(tenantKey, cost))
    } catch (error) {
      return Promise.reject(asStoreError(error, 'limiter', 'rate limiter backend failed'))
    }
  }

  function giveBack(
    limiter: RateLimiterAbstract,
    tenantKey: string,
    consumed: RateLimiterRes,
    cost: number,
  ): Promise<unknown> {
    // Near the window's end the points are left to expire with it: a late give-back
    // would start the next window below 0 and admit requests too many.
    return consumed.msBeforeNext > giveBackMarginMs ? counted(limiter.reward(tenantKey, cost)) : Promise.resolve()
  }

  async function read(limiter: RateLimiterAbstract, tenantKey: string): Promise<RateLimiterRes | null | undefined> {
    try {
      return await limiter.get(tenantKey)
    } catch (error) {
      throw asStoreError(error, 'limiter', 'rate limiter backend failed')
    }
  }

  async function peek(tenantKey: string, limits: WindowLimits, cost = 1): Promise<LimitDecision> {
    const [minuteRes, hourRes] = await Promise.all([read(minute, tenantKey), read(hour, tenantKey)])
    const minuteCount = liveCount(minuteRes)
    const hourCount = liveCount(hourRes)
    return decision(
      minuteCount + cost <= limits.perMinute,
      hourCount + cost <= limits.perHour,
      windowState('minute', limits.perMinute, minuteCount, minuteRes, MINUTE_MS),
      windowState('hour', limits.perHour, hourCount, hourRes, HOUR_MS),
    )
  }

  async function decide(tenantKey: string, limits: WindowLimits, cost: number): Promise<LimitDecision> {
    const seen = await peek(tenantKey, limits, cost)
    if (!seen.admitted) return seen
    const [minuteCall, hourCall] = await Promise.allSettled([
      count(minute, tenantKey, cost),
      count(hour, tenantKey, cost),
    ])
    if (minuteCall.status === 'rejected' || hourCall.status === 'rejected') {
      // Nothing was admitted: give back whichever window did count, then report the failure.
      await Promise.allSettled([
        minuteCall.status === 'fulfilled' ? giveBack(minute, tenantKey, minuteCall.value, cost) : undefined,
        hourCall.status === 'fulfilled' ? giveBack(hour, tenantKey, hourCall.value, cost) : undefined,
      ])
      throw minuteCall.status === 'rejected' ? minuteCall.reason : (hourCall as PromiseRejectedResult).reason
    }
    const minuteRes = minuteCall.value
    const hourRes = hourCall.value
    if (minuteRes.consumedPoints <= limits.perMinute && hourRes.consumedPoints <= limits.perHour) {
      return decision(
        true,
        true,
        windowState('minute', limits.perMinute, minuteRes.consumedPoints, minuteRes, MINUTE_MS),
        windowState('hour', limits.perHour, hourRes.consumedPoints, hourRes, HOUR_MS),
      )
    }
    // Another process counted in between: this request lost, gives back its points in both
    // windows, and reports the windows as they are without it.
    await Promise.all([giveBack(minute, tenantKey, minuteRes, cost), giveBack(hour, tenantKey, hourRes, cost)])
    return decision(
      minuteRes.consumedPoints <= limits.perMinute,
      hourRes.consumedPoints <= limits.perHour,
      windowState('minute', limits.perMinute, minuteRes.consumedPoints - cost, minuteRes, MINUTE_MS),
      windowState('hour', limits.perHour, hourRes.consumedPoints - cost, hourRes, HOUR_MS),
    )
  }

  // One decision per tenant at a time in this process: a read and the count after it
  // are never interleaved with another request of the same tenant.
  const queues = new Map<string, Promise<unknown>>()
  let pending = 0

  function consume(tenantKey: string, limits: WindowLimits, cost = 1): Promise<LimitDecision> {
    const refused = quotasRefused(limits)
    if (refused !== null) return refused
    if (pending >= maxPendingCalls) {
      return Promise.reject(new SaikuStoreError('limiter', `${pending} rate limiter calls already pending`))
    }
    pending++
    const previous = queues.get(tenantKey)
    const run =
      previous === undefined ? decide(tenantKey, limits, cost) : previous.then(() => decide(tenantKey, limits, cost))
    const settled = run.then(
      () => undefined,
      () => undefined,
    )
    queues.set(tenantKey, settled)
    void settled.then(() => {
      pending--
      if (queues.get(tenantKey) === settled) queues.delete(tenantKey)
    })
    return run
  }

  return {
    inProcess: options.factory === undefined,
    consume,
    peek: (tenantKey, limits) => quotasRefused(limits) ?? peek(tenantKey, limits),
  }
}
