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
   * Most tenants counted at once. Beyond it the tenant seen least recently is
   * forgotten (its counts start over), so a flood of tenants cannot grow memory
   * without bound. Nothing live is forgotten while at most this many tenants make
   * requests within any hour. About 100 bytes each. Default 100000.
   */
  readonly maxTenants?: number
  /** The clock; default `Date.now`, read at every call. */
  readonly now?: () => number
}

export interface MemoryLimiterBackend extends LimiterBackend {
  /** The same decision, without a promise: the in-process hot path. */
  consumeSync(tenantKey: string, limits: WindowLimits): LimitDecision
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
  return { window, limit, remaining: limit > count ? limit - count : 0, resetMs: resetMs > 1 ? resetMs : 1 }
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
  const maxTenants = options.maxTenants ?? 100_000
  if (!Number.isSafeInteger(maxTenants) || maxTenants < 1) {
    throw new SaikuConfigError('limiter.maxTenants', 'a positive integer', maxTenants)
  }
  const now = options.now ?? ((): number => Date.now())
  // Insertion order is the order tenants were last seen in: the first is the one
  // idle longest, forgotten first when the map is full. Moving the tenant that
  // was also the last one seen would change nothing, so it is skipped.
  const tenants = new Map<string, Windows>()
  let lastSeen: string | undefined
  // The windows of the last `decide`, for a decision built without allocating twice.
  let minuteCount = 0
  let hourCount = 0
  let minuteEnd = 0
  let hourEnd = 0

  function seen(tenantKey: string, windows: Windows): void {
    if (lastSeen === tenantKey) return
    tenants.delete(tenantKey)
    tenants.set(tenantKey, windows)
    lastSeen = tenantKey
  }

  /**
   * Reads the tenant's live windows into minuteCount/hourCount and their ends;
   * counts one request if `count` and both have room. Returns whether it had room.
   */
  function advance(tenantKey: string, limits: WindowLimits, count: boolean, nowMs: number): boolean {
    const windows = tenants.get(tenantKey)
    const minuteLive = windows !== undefined && nowMs < windows.minuteStartMs + MINUTE_MS
    const hourLive = windows !== undefined && nowMs < windows.hourStartMs + HOUR_MS
    minuteCount = minuteLive ? windows.minuteCount : 0
    hourCount = hourLive ? windows.hourCount : 0
    minuteEnd = minuteLive ? windows.minuteStartMs + MINUTE_MS : nowMs + MINUTE_MS
    hourEnd = hourLive ? windows.hourStartMs + HOUR_MS : nowMs + HOUR_MS
    const admitted = minuteCount < limits.perMinute && hourCount < limits.perHour
    if (!count) return admitted
    if (windows === undefined) {
      // Never reached when refused: limits are at least 1.
      if (tenants.size >= maxTenants) {
        const oldest = tenants.keys().next().value as string
        tenants.delete(oldest)
      }
      minuteCount = 1
      hourCount = 1
      tenants.set(tenantKey, { minuteStartMs: nowMs, minuteCount: 1, hourStartMs: nowMs, hourCount: 1 })
      lastSeen = tenantKey
      return true
    }
    seen(tenantKey, windows)
    if (!admitted) return false
    // A window that ended starts over at this, its first admitted request.
    if (!minuteLive) windows.minuteStartMs = nowMs
    if (!hourLive) windows.hourStartMs = nowMs
    windows.minuteCount = ++minuteCount
    windows.hourCount = ++hourCount
    return true
  }

  function waitMs(limits: WindowLimits, nowMs: number): number {
    const minuteWait = minuteCount >= limits.perMinute ? Math.max(1, minuteEnd - nowMs) : 0
    const hourWait = hourCount >= limits.perHour ? Math.max(1, hourEnd - nowMs) : 0
    return minuteWait > hourWait ? minuteWait : hourWait
  }

  function decide(tenantKey: string, limits: WindowLimits, count: boolean): LimitDecision {
    const nowMs = now()
    const admitted = advance(tenantKey, limits, count, nowMs)
    const minute = state('minute', limits.perMinute, minuteCount, minuteEnd - nowMs)
    const hour = state('hour', limits.perHour, hourCount, hourEnd - nowMs)
    return { admitted, minute, hour, retryAfterMs: admitted ? 0 : waitMs(limits, nowMs) }
  }

  function hitSync(key: string, limits: WindowLimits): number {
    const nowMs = now()
    return advance(key, limits, true, nowMs) ? 0 : waitMs(limits, nowMs)
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
