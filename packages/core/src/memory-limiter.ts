import { SaikuConfigError } from './errors.js'
import type { LimitDecision, LimiterBackend, WindowState } from './limiter.js'
import type { WindowLimits } from './tiers.js'

const MINUTE_MS = 60_000
const HOUR_MS = 3_600_000

/** One tenant's two fixed windows: start time and count of each. */
interface Windows {
  minuteStartMs: number
  minuteCount: number
  hourStartMs: number
  hourCount: number
}

export interface MemoryLimiterOptions {
  /**
   * Most tenants counted at once. Beyond it the tenant whose hour began longest
   * ago is forgotten (its counts start over), so a flood of tenants cannot grow
   * memory without bound. About 100 bytes each. Default 100000.
   */
  readonly maxTenants?: number
  /** The clock; default `Date.now`, read at every call. */
  readonly now?: () => number
}

export interface MemoryLimiterBackend extends LimiterBackend {
  /** The same decision, without a promise: the in-process hot path. */
  consumeSync(tenantKey: string, limits: WindowLimits): LimitDecision
  /** What a request would be told now, without counting it. */
  peekSync(tenantKey: string, limits: WindowLimits): LimitDecision
  /** `peekSync` behind the backend interface's promise. */
  peek(tenantKey: string, limits: WindowLimits): Promise<LimitDecision>
  /** Counts one event if both windows have room; returns 0, or how long until they do. Allocates nothing. */
  hitSync(key: string, limits: WindowLimits): number
  /** Takes back one event counted by `hitSync` (it turned out not to count). */
  unhitSync(key: string): void
  readonly trackedTenants: number
}

function state(window: 'minute' | 'hour', limit: number, count: number, resetMs: number): WindowState {
  return { window, limit, remaining: limit > count ? limit - count : 0, resetMs: resetMs > 1 ? resetMs : 1 }
}

/**
 * The default backend: both windows of a tenant in one map entry, decided
 * synchronously, all or nothing (a refused request writes nothing), bounded in
 * size. Counts live in this process only; use a shared backend with several.
 */
export function createMemoryLimiter(options: MemoryLimiterOptions = {}): MemoryLimiterBackend {
  const maxTenants = options.maxTenants ?? 100_000
  if (!Number.isSafeInteger(maxTenants) || maxTenants < 1) {
    throw new SaikuConfigError('limiter.maxTenants', 'a positive integer', maxTenants)
  }
  const now = options.now ?? ((): number => Date.now())
  // Insertion order is hour-start order: an entry is re-inserted when its hour starts over.
  const tenants = new Map<string, Windows>()

  /** The tenant's windows as of now, started over where they ran out; counts one request if `count` and both have room. */
  function advance(tenantKey: string, limits: WindowLimits, count: boolean, nowMs: number): { windows: Windows; admitted: boolean } {
    let windows = tenants.get(tenantKey)
    if (!count && windows === undefined) windows = { minuteStartMs: nowMs, minuteCount: 0, hourStartMs: nowMs, hourCount: 0 }
    if (windows === undefined || nowMs >= windows.hourStartMs + HOUR_MS || nowMs < windows.hourStartMs) {
      if (windows !== undefined) tenants.delete(tenantKey)
      else if (tenants.size >= maxTenants) tenants.delete(tenants.keys().next().value as string)
      windows = { minuteStartMs: nowMs, minuteCount: 0, hourStartMs: nowMs, hourCount: 0 }
      tenants.set(tenantKey, windows)
    } else if (nowMs >= windows.minuteStartMs + MINUTE_MS || nowMs < windows.minuteStartMs) {
      windows.minuteStartMs = nowMs
      windows.minuteCount = 0
    }
    const admitted = windows.minuteCount < limits.perMinute && windows.hourCount < limits.perHour
    if (admitted && count) {
      windows.minuteCount++
      windows.hourCount++
    }
    return { windows, admitted }
  }

  function waitMs(windows: Windows, limits: WindowLimits, nowMs: number): number {
    const minuteWait = windows.minuteCount >= limits.perMinute ? Math.max(1, windows.minuteStartMs + MINUTE_MS - nowMs) : 0
    const hourWait = windows.hourCount >= limits.perHour ? Math.max(1, windows.hourStartMs + HOUR_MS - nowMs) : 0
    return minuteWait > hourWait ? minuteWait : hourWait
  }

  function decide(tenantKey: string, limits: WindowLimits, count: boolean): LimitDecision {
    const nowMs = now()
    const { windows, admitted } = advance(tenantKey, limits, count, nowMs)
    const minute = state('minute', limits.perMinute, windows.minuteCount, windows.minuteStartMs + MINUTE_MS - nowMs)
    const hour = state('hour', limits.perHour, windows.hourCount, windows.hourStartMs + HOUR_MS - nowMs)
    return { admitted, minute, hour, retryAfterMs: admitted ? 0 : waitMs(windows, limits, nowMs) }
  }

  function hitSync(key: string, limits: WindowLimits): number {
    const nowMs = now()
    const { windows, admitted } = advance(key, limits, true, nowMs)
    return admitted ? 0 : waitMs(windows, limits, nowMs)
  }

  const consumeSync = (tenantKey: string, limits: WindowLimits): LimitDecision => decide(tenantKey, limits, true)
  const peekSync = (tenantKey: string, limits: WindowLimits): LimitDecision => decide(tenantKey, limits, false)
  return {
    inProcess: true,
    consumeSync,
    peekSync,
    hitSync,
    unhitSync(key) {
      const windows = tenants.get(key)
      if (windows === undefined) return
      if (windows.minuteCount > 0) windows.minuteCount--
      if (windows.hourCount > 0) windows.hourCount--
    },
    consume: (tenantKey, limits) => Promise.resolve(consumeSync(tenantKey, limits)),
    peek: (tenantKey, limits) => Promise.resolve(peekSync(tenantKey, limits)),
    get trackedTenants() {
      return tenants.size
    },
  }
}
