import { oneOf, positiveInteger } from './validate.js'
import type { LimitDecision, LimiterBackend, WindowState } from './limiter.js'
import type { WindowLimits } from './tiers.js'
import {
  countIn,
  currentIndex,
  fullResetMs,
  HOUR_OFFSET,
  MINUTE_OFFSET,
  newRollingState,
  ROLLING_SUBWINDOWS,
  usedAt,
  waitMs,
  type RollingState,
} from './rolling.js'

/** How a backend's windows count: fixed windows from a tenant's first request, or rolling ones (see `rolling.ts`). */
export type WindowKind = 'fixed' | 'rolling'
export const WINDOW_KINDS: readonly WindowKind[] = Object.freeze(['fixed', 'rolling'])

const MINUTE_MS = 60_000
const HOUR_MS = 3_600_000
const MINUTE_WIDTH_MS = MINUTE_MS / ROLLING_SUBWINDOWS
const HOUR_WIDTH_MS = HOUR_MS / ROLLING_SUBWINDOWS
/** A tenant not counted yet: read, never written. */
const EMPTY_STATE: RollingState = Object.freeze(newRollingState()) as RollingState

/** One tenant's two fixed windows (start time and count of each), linked in the order tenants were last seen. */
interface Windows {
  readonly key: string
  minuteStartMs: number
  minuteCount: number
  hourStartMs: number
  hourCount: number
  /** With rolling windows: both of them, in sub-windows (24 numbers). */
  rolling: RollingState | null
  /** Seen before this one (toward the least recently seen), and after it. */
  older: Windows | null
  newer: Windows | null
}

export interface MemoryLimiterOptions {
  /**
   * Most tenants counted at once. Beyond it the tenant seen least recently is
   * forgotten (its counts start over), so a flood of tenants cannot grow memory
   * without bound. Nothing live is forgotten while at most this many tenants make
   * requests within any hour. About 210 bytes each with a UUID key. Default 100000.
   */
  readonly maxTenants?: number
  /** The clock; default `Date.now`, read at every call. */
  readonly now?: () => number
  /**
   * `'fixed'` (default): each window starts at a tenant's first request and ends its
   * length later. `'rolling'`: no span of a window's length ever admits more than its
   * limit (see "How the limits count" in docs/limits.md); 24 numbers, about 240 bytes more per tenant.
   */
  readonly windows?: WindowKind
}

export interface MemoryLimiterBackend extends LimiterBackend {
  /** The same decision, without a promise: the in-process hot path. */
  /** `nowMs`: the time, when the caller read this limiter's clock already. */
  consumeSync(tenantKey: string, limits: WindowLimits, cost?: number, nowMs?: number): LimitDecision
  /** What a request would be told now, without counting it; changes nothing. */
  peekSync(tenantKey: string, limits: WindowLimits): LimitDecision
  peek(tenantKey: string, limits: WindowLimits): Promise<LimitDecision>
  /** Counts one event if both windows have room; returns 0, or how long until they do. Allocates nothing. */
  hitSync(key: string, limits: WindowLimits): number
  /** Takes back one event counted by `hitSync` (it turned out not to count). */
  unhitSync(key: string): void
  readonly trackedTenants: number
}

function state(window: 'minute' | 'hour', limit: number, count: number, resetMs: number): WindowState {
  return {
    window,
    limit,
    remaining: limit > count ? limit - count : 0,
    used: count,
    resetMs: resetMs > 1 ? resetMs : 1,
  }
}

/**
 * The default backend: both windows of a tenant in one map entry, decided
 * synchronously, all or nothing (a refused request writes nothing), bounded in
 * size. Counts live in this process only; use a shared backend with several.
 *
 * Each window starts at the first request admitted after the previous one
 * ended and ends its length later, independently of the other. A clock that
 * steps back keeps the counts (the windows end when the clock reaches their
 * end again); it never opens a fresh window.
 */
export function createMemoryLimiter(options: MemoryLimiterOptions = {}): MemoryLimiterBackend {
  const maxTenants = positiveInteger('limiter.maxTenants', options.maxTenants, 100_000)
  const now = options.now ?? ((): number => Date.now())
  const windowKind = oneOf('limiter.windows', options.windows, WINDOW_KINDS, 'fixed')
  const tenants = new Map<string, Windows>()
  // A list through the entries in the order they were last seen: the oldest is the
  // tenant idle longest, forgotten first when the map is full. Moving an entry is a
  // few pointer writes, where re-inserting it into the map would rehash.
  let oldest: Windows | null = null
  let newest: Windows | null = null

  function unlink(windows: Windows): void {
    if (windows.older === null) oldest = windows.newer
    else windows.older.newer = windows.newer
    if (windows.newer === null) newest = windows.older
    else windows.newer.older = windows.older
  }

  function append(windows: Windows): void {
    windows.older = newest
    windows.newer = null
    if (newest === null) oldest = windows
    else newest.newer = windows
    newest = windows
  }

  /** A tenant's first admitted request since it was last forgotten: both windows start now. */
  function add(tenantKey: string, nowMs: number, cost: number): Windows {
    if (tenants.size >= maxTenants && oldest !== null) {
      tenants.delete(oldest.key)
      unlink(oldest)
    }
    const rolling = windowKind === 'rolling' ? newRollingState() : null
    const windows: Windows = {
      key: tenantKey,
      minuteStartMs: nowMs,
      minuteCount: cost,
      hourStartMs: nowMs,
      hourCount: cost,
      rolling,
      older: null,
      newer: null,
    }
    tenants.set(tenantKey, windows)
    append(windows)
    return windows
  }

  /**
   * Rolling windows: admitted only if both have room for `cost` now, then counted in
   * both (when `count`). A window short of room reports the wait until it has room
   * (the true earliest admission, nothing else admitted meanwhile); one with room,
   * the wait until all it counts has dropped out.
   */
  function decideRolling(
    tenantKey: string,
    limits: WindowLimits,
    cost: number,
    count: boolean,
    nowMs = now(),
  ): LimitDecision {
    let windows = tenants.get(tenantKey)
    const rolling = windows?.rolling ?? EMPTY_STATE
    const minuteIndex = currentIndex(rolling, MINUTE_OFFSET, nowMs, MINUTE_WIDTH_MS)
    const hourIndex = currentIndex(rolling, HOUR_OFFSET, nowMs, HOUR_WIDTH_MS)
    const minuteUsed = usedAt(rolling, MINUTE_OFFSET, minuteIndex)
    const hourUsed = usedAt(rolling, HOUR_OFFSET, hourIndex)
    const minuteWait =
      minuteUsed + cost <= limits.perMinute
        ? 0
        : waitMs(rolling, MINUTE_OFFSET, minuteIndex, nowMs, MINUTE_WIDTH_MS, limits.perMinute, cost)
    const hourWait =
      hourUsed + cost <= limits.perHour
        ? 0
        : waitMs(rolling, HOUR_OFFSET, hourIndex, nowMs, HOUR_WIDTH_MS, limits.perHour, cost)
    const admitted = minuteWait === 0 && hourWait === 0
    if (count && windows !== undefined && windows !== newest) {
      unlink(windows)
      append(windows)
    }
    if (count && admitted) {
      windows ??= add(tenantKey, nowMs, 0)
      countIn(windows.rolling!, MINUTE_OFFSET, minuteIndex, cost)
      countIn(windows.rolling!, HOUR_OFFSET, hourIndex, cost)
      // What was just counted, in the current sub-windows, is the last to drop out.
      return {
        admitted,
        minute: state(
          'minute',
          limits.perMinute,
          minuteUsed + cost,
          (minuteIndex + ROLLING_SUBWINDOWS + 1) * MINUTE_WIDTH_MS - nowMs,
        ),
        hour: state(
          'hour',
          limits.perHour,
          hourUsed + cost,
          (hourIndex + ROLLING_SUBWINDOWS + 1) * HOUR_WIDTH_MS - nowMs,
        ),
        retryAfterMs: 0,
      }
    }
    return {
      admitted,
      minute: state(
        'minute',
        limits.perMinute,
        minuteUsed,
        minuteWait || fullResetMs(rolling, MINUTE_OFFSET, minuteIndex, nowMs, MINUTE_WIDTH_MS, MINUTE_MS),
      ),
      hour: state(
        'hour',
        limits.perHour,
        hourUsed,
        hourWait || fullResetMs(rolling, HOUR_OFFSET, hourIndex, nowMs, HOUR_WIDTH_MS, HOUR_MS),
      ),
      retryAfterMs: admitted ? 0 : Math.max(minuteWait, hourWait),
    }
  }

  /**
   * Counts one request in both windows if both have room (limits are at least 1,
   * so a tenant without windows always has room); a window that ended starts over
   * at this, its first admitted request. Refused, it writes nothing but the order
   * of last sight. Returns the wait until both have room: 0 when admitted.
   */
  function count(windows: Windows | undefined, tenantKey: string, limits: WindowLimits, nowMs: number): number {
    if (windows === undefined) {
      add(tenantKey, nowMs, 1)
      return 0
    }
    if (windows !== newest) {
      unlink(windows)
      append(windows)
    }
    const minuteLive = nowMs < windows.minuteStartMs + MINUTE_MS
    const hourLive = nowMs < windows.hourStartMs + HOUR_MS
    const minuteCount = minuteLive ? windows.minuteCount : 0
    const hourCount = hourLive ? windows.hourCount : 0
    if (minuteCount < limits.perMinute && hourCount < limits.perHour) {
      if (!minuteLive) windows.minuteStartMs = nowMs
      if (!hourLive) windows.hourStartMs = nowMs
      windows.minuteCount = minuteCount + 1
      windows.hourCount = hourCount + 1
      return 0
    }
    const minuteWait = minuteCount >= limits.perMinute ? Math.max(1, windows.minuteStartMs + MINUTE_MS - nowMs) : 0
    const hourWait = hourCount >= limits.perHour ? Math.max(1, windows.hourStartMs + HOUR_MS - nowMs) : 0
    return minuteWait > hourWait ? minuteWait : hourWait
  }

  /** What a request would be told now, from the windows as they stand. */
  function peekAt(windows: Windows | undefined, limits: WindowLimits, nowMs: number, cost = 1): LimitDecision {
    const minuteLive = windows !== undefined && nowMs < windows.minuteStartMs + MINUTE_MS
    const hourLive = windows !== undefined && nowMs < windows.hourStartMs + HOUR_MS
    const minuteCount = minuteLive ? windows.minuteCount : 0
    const hourCount = hourLive ? windows.hourCount : 0
    const minute = state(
      'minute',
      limits.perMinute,
      minuteCount,
      minuteLive ? windows.minuteStartMs + MINUTE_MS - nowMs : MINUTE_MS,
    )
    const hour = state('hour', limits.perHour, hourCount, hourLive ? windows.hourStartMs + HOUR_MS - nowMs : HOUR_MS)
    const minuteWait = minuteCount + cost > limits.perMinute ? minute.resetMs : 0
    const hourWait = hourCount + cost > limits.perHour ? hour.resetMs : 0
    const waitMs = minuteWait > hourWait ? minuteWait : hourWait
    return { admitted: waitMs === 0, minute, hour, retryAfterMs: waitMs }
  }

  function hitSync(key: string, limits: WindowLimits): number {
    return count(tenants.get(key), key, limits, now())
  }

  // `count` and `peekAt` in one pass: the in-process hot path. `cost` units are
  // taken from both windows or none; a cost above a window's limit is always refused.
  function consumeSync(tenantKey: string, limits: WindowLimits, cost = 1, nowMs = now()): LimitDecision {
    if (windowKind === 'rolling') return decideRolling(tenantKey, limits, cost, true, nowMs)
    const windows = tenants.get(tenantKey)
    if (windows === undefined && cost <= limits.perMinute && cost <= limits.perHour) {
      add(tenantKey, nowMs, cost)
      return {
        admitted: true,
        minute: state('minute', limits.perMinute, cost, MINUTE_MS),
        hour: state('hour', limits.perHour, cost, HOUR_MS),
        retryAfterMs: 0,
      }
    }
    if (windows === undefined) return peekAt(undefined, limits, nowMs, cost)
    if (windows !== newest) {
      unlink(windows)
      append(windows)
    }
    const minuteLive = nowMs < windows.minuteStartMs + MINUTE_MS
    const hourLive = nowMs < windows.hourStartMs + HOUR_MS
    let minuteCount = minuteLive ? windows.minuteCount : 0
    let hourCount = hourLive ? windows.hourCount : 0
    const admitted = minuteCount + cost <= limits.perMinute && hourCount + cost <= limits.perHour
    if (admitted) {
      if (!minuteLive) windows.minuteStartMs = nowMs
      if (!hourLive) windows.hourStartMs = nowMs
      windows.minuteCount = minuteCount += cost
      windows.hourCount = hourCount += cost
    }
    const minute = state(
      'minute',
      limits.perMinute,
      minuteCount,
      minuteLive || admitted ? windows.minuteStartMs + MINUTE_MS - nowMs : MINUTE_MS,
    )
    const hour = state(
      'hour',
      limits.perHour,
      hourCount,
      hourLive || admitted ? windows.hourStartMs + HOUR_MS - nowMs : HOUR_MS,
    )
    if (admitted) return { admitted, minute, hour, retryAfterMs: 0 }
    const minuteWait = minuteCount + cost > limits.perMinute ? minute.resetMs : 0
    const hourWait = hourCount + cost > limits.perHour ? hour.resetMs : 0
    return { admitted, minute, hour, retryAfterMs: minuteWait > hourWait ? minuteWait : hourWait }
  }

  const peekSync = (tenantKey: string, limits: WindowLimits): LimitDecision =>
    windowKind === 'rolling'
      ? decideRolling(tenantKey, limits, 1, false)
      : peekAt(tenants.get(tenantKey), limits, now())
  return {
    inProcess: true,
    windows: windowKind,
    consumeSync,
    peekSync,
    hitSync,
    unhitSync(key) {
      const windows = tenants.get(key)
      if (windows === undefined) return
      if (windows.minuteCount > 0) windows.minuteCount--
      if (windows.hourCount > 0) windows.hourCount--
    },
    consume: (tenantKey, limits, cost) => Promise.resolve(consumeSync(tenantKey, limits, cost)),
    peek: (tenantKey, limits) => Promise.resolve(peekSync(tenantKey, limits)),
    get trackedTenants() {
      return tenants.size
    },
  }
}
