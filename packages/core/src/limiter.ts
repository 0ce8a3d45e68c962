import { RateLimiterMemory, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible'
import { SaikuConfigError } from './errors.js'
import type { WindowLimits } from './tiers.js'
import { asStoreError } from './timeout.js'

export type WindowName = 'minute' | 'hour'

export interface WindowState {
  readonly window: WindowName
  readonly limit: number
  readonly remaining: number
  /** Until this window's count resets; at least 1. */
  readonly resetMs: number
}

export interface LimitDecision {
  readonly admitted: boolean
  readonly minute: WindowState
  readonly hour: WindowState
  /** When refused: until the exhausted window (the later one, if both) admits again. 0 when admitted. */
  readonly retryAfterMs: number
}

/**
 * Counts a tenant's requests in both windows and admits or refuses one,
 * all or nothing: a refused request leaves both counts as they were.
 * Implement it to plug in a backend that decides both windows in one call.
 */
export interface LimiterBackend {
  consume(tenantKey: string, limits: WindowLimits): Promise<LimitDecision>
  /**
   * True when the backend lives in this process and cannot hang (memory):
   * the authenticator then skips the `limiter.timeoutMs` deadline.
   */
  readonly inProcess?: boolean
  /** Optional: the same decision without a promise, for backends that can decide at once. */
  consumeSync?(tenantKey: string, limits: WindowLimits): LimitDecision
  /**
   * Optional: what a request would be told now, without counting it or moving
   * any window. Dashboards read usage through it (`authenticator.usage()`).
   */
  peek?(tenantKey: string, limits: WindowLimits): Promise<LimitDecision>
}

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
   * A refused request gives its point back only while its window has at least
   * this long to run, so a give-back can never land in the next window and
   * open it at -1. Default 1000; make it at least the backend's worst latency.
   */
  readonly giveBackMarginMs?: number | undefined
}

// Limits are compared here, per tenant, so the limiters only count: a tier change
// then applies on the next request and never resets a count (one limiter per tier would).
const COUNT_ONLY_POINTS = Number.MAX_SAFE_INTEGER

const memoryFactory: RateLimiterFactory = (options) => new RateLimiterMemory(options)

function windowState(window: WindowName, limit: number, res: RateLimiterRes | null, durationMs: number): WindowState {
  const consumed = res === null ? 0 : res.consumedPoints
  // A missing or negative TTL (clock skew, a key without expiry) must never promise an earlier retry.
  const resetMs = res === null || !(res.msBeforeNext > 0) ? durationMs : res.msBeforeNext
  return { window, limit, remaining: Math.max(0, limit - consumed), resetMs: Math.max(1, resetMs) }
}

/** The default backend: two rate-limiter-flexible limiters (memory unless a factory is given). */
export function createRateLimiterBackend(options: RateLimiterBackendOptions = {}): LimiterBackend {
  const factory = options.factory ?? memoryFactory
  const keyPrefix = options.keyPrefix ?? 'saiku'
  const minute = factory({ keyPrefix: `${keyPrefix}:minute`, points: COUNT_ONLY_POINTS, duration: 60 })
  const hour = factory({ keyPrefix: `${keyPrefix}:hour`, points: COUNT_ONLY_POINTS, duration: 3600 })
  for (const [name, limiter] of [['minute', minute], ['hour', hour]] as const) {
    if (typeof limiter?.consume !== 'function' || typeof limiter.reward !== 'function' || typeof limiter.get !== 'function') {
      throw new SaikuConfigError(`limiter.factory (${name})`, 'a rate-limiter-flexible limiter', limiter)
    }
  }
  const giveBackMarginMs = options.giveBackMarginMs ?? 1_000

  // A limiter built with its own small `points` rejects with its result; that is still a count.
  function counted(promise: Promise<RateLimiterRes>): Promise<RateLimiterRes> {
    return promise.catch((error: unknown) => {
      if (error instanceof RateLimiterRes) return error
      throw asStoreError(error, 'limiter', 'rate limiter backend failed')
    })
  }

  function giveBack(limiter: RateLimiterAbstract, tenantKey: string, consumed: RateLimiterRes): Promise<unknown> {
    // Near the window's end the point is left to expire with it: a late give-back
    // would start the next window at -1 and admit one request too many.
    return consumed.msBeforeNext > giveBackMarginMs ? counted(limiter.reward(tenantKey, 1)) : Promise.resolve()
  }

  function peek(limiter: RateLimiterAbstract, tenantKey: string): Promise<RateLimiterRes | null> {
    return limiter.get(tenantKey).catch((error: unknown) => {
      throw asStoreError(error, 'limiter', 'rate limiter backend failed')
    })
  }

  return {
    inProcess: options.factory === undefined,
    async consume(tenantKey, limits) {
      const minuteRes = await counted(minute.consume(tenantKey, 1))
      const minuteState = windowState('minute', limits.perMinute, minuteRes, 60_000)
      if (minuteRes.consumedPoints > limits.perMinute) {
        // Refused by the minute: give the point back and leave the hour untouched.
        const [, hourRes] = await Promise.all([giveBack(minute, tenantKey, minuteRes), peek(hour, tenantKey)])
        const hourState = windowState('hour', limits.perHour, hourRes, 3_600_000)
        const hourExhausted = hourState.remaining === 0
        return {
          admitted: false,
          minute: { ...minuteState, remaining: 0 },
          hour: hourState,
          retryAfterMs: hourExhausted ? Math.max(minuteState.resetMs, hourState.resetMs) : minuteState.resetMs,
        }
      }
      const hourRes = await counted(hour.consume(tenantKey, 1))
      const hourState = windowState('hour', limits.perHour, hourRes, 3_600_000)
      if (hourRes.consumedPoints > limits.perHour) {
        await Promise.all([giveBack(minute, tenantKey, minuteRes), giveBack(hour, tenantKey, hourRes)])
        const minuteGivenBack = minuteRes.msBeforeNext > giveBackMarginMs ? 1 : 0
        return {
          admitted: false,
          minute: { ...minuteState, remaining: Math.min(limits.perMinute, minuteState.remaining + minuteGivenBack) },
          hour: { ...hourState, remaining: 0 },
          retryAfterMs: hourState.resetMs,
        }
      }
      return { admitted: true, minute: minuteState, hour: hourState, retryAfterMs: 0 }
    },
  }
}
