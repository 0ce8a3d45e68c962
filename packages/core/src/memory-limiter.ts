import { oneOf, positiveInteger } from './validate.js'
import { DAY_MS, monthWindowAt } from './calendar.js'
import { SaikuConfigError } from './errors.js'
import type { LimitDecision, LimiterBackend, WindowName, WindowState } from './limiter.js'
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

/**
 * A tenant's quota windows: the end and count of the UTC day and of the month last counted in
 * (end 0: none yet). A window counted in lives until its end, even when the clock steps back.
 */
interface QuotaCounts {
  dayEndMs: number
  dayCount: number
  monthStartMs: number
  monthEndMs: number
  monthCount: number
}

/**
 * One tenant's count in one day or month quota window, as `quotaCounts` reads it and
 * `restoreQuotaCounts` loads it: `startMs` included, `endMs` excluded, ms since the epoch.
 */
export interface QuotaCountRow {
  readonly tenantKey: string
  readonly window: 'day' | 'month'
  readonly startMs: number
  readonly endMs: number
  readonly count: number
}

/** A minute or hour window that never started: one that ended long ago. */
const NEVER_STARTED_MS = Number.MIN_SAFE_INTEGER

/** One tenant's two fixed windows (start time and count of each), linked in the order tenants were last seen. */
interface Windows {
  readonly key: string
  minuteStartMs: number
  minuteCount: number
  hourStartMs: number
  hourCount: number
  /** With rolling windows: both of them, in sub-windows (24 numbers). */
  rolling: RollingState | null
  /** Day and month: null until the tenant's limits set `perDay` or `perMonth`. */
  quotas: QuotaCounts | null
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
   *
   * Day and month quotas (`perDay`, `perMonth`) count on calendar windows in UTC either way, in about
   * 90 bytes more per tenant whose limits set one (none for the others). Like every count here they
   * live in this process only: a restart forgets them, and each process counts its own.
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
  /**
   * Counts one event if every window (and quota the limits set) has room; returns 0, or how long
   * until they all do. Allocates nothing but a tenant's first entry and quota counts.
   */
  hitSync(key: string, limits: WindowLimits): number
  /** Takes back one event counted by `hitSync` (it turned out not to count). */
  unhitSync(key: string): void
  readonly trackedTenants: number
  /**
   * The day and month counts of the tenants whose quotas counted (or gave back) a request since
   * the last call, one row per window the limits set, then forgets which those were: call it on a
   * cadence and write the rows somewhere that outlives the process. Tenants forgotten meanwhile
   * (beyond `maxTenants`) are left out, as their counts are.
   */
  quotaCounts(): QuotaCountRow[]
  /**
   * Loads saved quota counts (rows `quotaCounts` gave, in any order): a row whose window has
   * ended by now is skipped, and no minute or hour window starts. A count this process holds
   * already for the same window is never lowered: the larger one stays (a row is never added on
   * top, so loading the same rows twice, or rows this process wrote, counts nothing twice).
   * Call it before the first request: requests counted here before it are not added to the row.
   * Returns how many rows were loaded; a malformed row throws `SaikuConfigError` and loads none.
   */
  restoreQuotaCounts(rows: Iterable<QuotaCountRow>): number
}

function state(window: WindowName, limit: number, count: number, resetMs: number): WindowState {
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
      changedQuotas.delete(oldest)
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
      quotas: null,
      older: null,
      newer: null,
    }
    tenants.set(tenantKey, windows)
    append(windows)
    return windows
  }

  // The quota windows as the decision at hand sees them (`quotaWait` fills it): one object, reused.
  const seen: QuotaCounts = { dayEndMs: 0, dayCount: 0, monthStartMs: 0, monthEndMs: 0, monthCount: 0 }
  // Tenants whose quota counts changed since `quotaCounts` last read them: at most every tenant held.
  const changedQuotas = new Set<Windows>()

  /**
   * Reads the quota windows the limits set into `seen` (one past its end is the calendar window
   * that holds the clock, counting 0) and returns the wait until each has room for `cost`: 0 when all have.
   */
  function quotaWait(quotas: QuotaCounts | null, limits: WindowLimits, nowMs: number, cost: number): number {
    const { perDay, perMonth } = limits
    let wait = 0
    if (perDay !== undefined) {
      if (quotas !== null && nowMs < quotas.dayEndMs) {
        seen.dayEndMs = quotas.dayEndMs
        seen.dayCount = quotas.dayCount
      } else {
        seen.dayEndMs = (Math.floor(nowMs / DAY_MS) + 1) * DAY_MS
        seen.dayCount = 0
      }
      if (seen.dayCount + cost > perDay) wait = seen.dayEndMs - nowMs
    }
    if (perMonth !== undefined) {
      if (quotas !== null && nowMs < quotas.monthEndMs) {
        seen.monthStartMs = quotas.monthStartMs
        seen.monthEndMs = quotas.monthEndMs
        seen.monthCount = quotas.monthCount
      } else {
        // Only when the month counted in has ended: the calendar is read once a month per tenant.
        const month = monthWindowAt(limits.monthStartDay ?? 1, nowMs)
        seen.monthStartMs = month.startMs
        seen.monthEndMs = month.endMs
        seen.monthCount = 0
      }
      if (seen.monthCount + cost > perMonth && seen.monthEndMs - nowMs > wait) wait = seen.monthEndMs - nowMs
    }
    return wait
  }

  /** Counts `cost` in the quotas the limits set, as `quotaWait` read them (admitted requests only). */
  function countQuotas(windows: Windows, limits: WindowLimits, cost: number): void {
    const quotas = (windows.quotas ??= { dayEndMs: 0, dayCount: 0, monthStartMs: 0, monthEndMs: 0, monthCount: 0 })
    if (limits.perDay !== undefined) {
      quotas.dayEndMs = seen.dayEndMs
      quotas.dayCount = seen.dayCount += cost
    }
    if (limits.perMonth !== undefined) {
      quotas.monthStartMs = seen.monthStartMs
      quotas.monthEndMs = seen.monthEndMs
      quotas.monthCount = seen.monthCount += cost
    }
    changedQuotas.add(windows)
  }

  /** The decision with the `day` and `month` the limits set (at least one), from `seen`: one object, no spread. */
  function withQuotas(
    admitted: boolean,
    minute: WindowState,
    hour: WindowState,
    retryAfterMs: number,
    limits: WindowLimits,
    nowMs: number,
  ): LimitDecision {
    const { perDay, perMonth } = limits
    if (perMonth === undefined) {
      const day = state('day', perDay!, seen.dayCount, seen.dayEndMs - nowMs)
      return { admitted, minute, hour, day, retryAfterMs }
    }
    const month = state('month', perMonth, seen.monthCount, seen.monthEndMs - nowMs)
    if (perDay === undefined) return { admitted, minute, hour, month, retryAfterMs }
    const day = state('day', perDay, seen.dayCount, seen.dayEndMs - nowMs)
    return { admitted, minute, hour, day, month, retryAfterMs }
  }

  /**
   * Fixed minute and hour with quotas: `consumeSync` (`count`) or `peekSync`, kept apart from the
   * path of tenants without quotas so that one stays as it was.
   */
  function decideFixedQuotas(
    tenantKey: string,
    limits: WindowLimits,
    cost: number,
    count: boolean,
    nowMs: number,
  ): LimitDecision {
    let windows = tenants.get(tenantKey)
    const minuteLive = windows !== undefined && nowMs < windows.minuteStartMs + MINUTE_MS
    const hourLive = windows !== undefined && nowMs < windows.hourStartMs + HOUR_MS
    let minuteCount = minuteLive ? windows!.minuteCount : 0
    let hourCount = hourLive ? windows!.hourCount : 0
    const quotaMs = quotaWait(windows?.quotas ?? null, limits, nowMs, cost)
    const admitted = minuteCount + cost <= limits.perMinute && hourCount + cost <= limits.perHour && quotaMs === 0
    if (count && windows !== undefined && windows !== newest) {
      unlink(windows)
      append(windows)
    }
    const counted = count && admitted
    if (counted) {
      if (windows === undefined) windows = add(tenantKey, nowMs, 0)
      if (!minuteLive) windows.minuteStartMs = nowMs
      if (!hourLive) windows.hourStartMs = nowMs
      windows.minuteCount = minuteCount += cost
      windows.hourCount = hourCount += cost
      countQuotas(windows, limits, cost)
    }
    const minute = state(
      'minute',
      limits.perMinute,
      minuteCount,
      minuteLive || counted ? windows!.minuteStartMs + MINUTE_MS - nowMs : MINUTE_MS,
    )
    const hour = state(
      'hour',
      limits.perHour,
      hourCount,
      hourLive || counted ? windows!.hourStartMs + HOUR_MS - nowMs : HOUR_MS,
    )
    let retryAfterMs = 0
    if (!admitted) {
      const minuteWait = minuteCount + cost > limits.perMinute ? minute.resetMs : 0
      const hourWait = hourCount + cost > limits.perHour ? hour.resetMs : 0
      retryAfterMs = Math.max(minuteWait, hourWait, quotaMs)
    }
    return withQuotas(admitted, minute, hour, retryAfterMs, limits, nowMs)
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
    const quotas = limits.perDay !== undefined || limits.perMonth !== undefined
    const quotaMs = quotas ? quotaWait(windows?.quotas ?? null, limits, nowMs, cost) : 0
    const admitted = minuteWait === 0 && hourWait === 0 && quotaMs === 0
    if (count && windows !== undefined && windows !== newest) {
      unlink(windows)
      append(windows)
    }
    if (count && admitted) {
      windows ??= add(tenantKey, nowMs, 0)
      countIn(windows.rolling!, MINUTE_OFFSET, minuteIndex, cost)
      countIn(windows.rolling!, HOUR_OFFSET, hourIndex, cost)
      if (quotas) countQuotas(windows, limits, cost)
      // What was just counted, in the current sub-windows, is the last to drop out.
      const decision: LimitDecision = {
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
      return quotas ? withQuotas(admitted, decision.minute, decision.hour, 0, limits, nowMs) : decision
    }
    const decision: LimitDecision = {
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
      retryAfterMs: admitted ? 0 : Math.max(minuteWait, hourWait, quotaMs),
    }
    return quotas
      ? withQuotas(admitted, decision.minute, decision.hour, decision.retryAfterMs, limits, nowMs)
      : decision
  }

  /**
   * Counts one request in both windows if both have room (limits are at least 1,
   * so a tenant without windows always has room); a window that ended starts over
   * at this, its first admitted request. Refused, it writes nothing but the order
   * of last sight. Returns the wait until both have room: 0 when admitted.
   */
  function count(windows: Windows | undefined, tenantKey: string, limits: WindowLimits, nowMs: number): number {
    const quotas = limits.perDay !== undefined || limits.perMonth !== undefined
    const quotaMs = quotas ? quotaWait(windows?.quotas ?? null, limits, nowMs, 1) : 0
    if (windows === undefined) {
      if (quotaMs > 0) return quotaMs
      const added = add(tenantKey, nowMs, 1)
      if (quotas) countQuotas(added, limits, 1)
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
    if (minuteCount < limits.perMinute && hourCount < limits.perHour && quotaMs === 0) {
      if (!minuteLive) windows.minuteStartMs = nowMs
      if (!hourLive) windows.hourStartMs = nowMs
      windows.minuteCount = minuteCount + 1
      windows.hourCount = hourCount + 1
      if (quotas) countQuotas(windows, limits, 1)
      return 0
    }
    const minuteWait = minuteCount >= limits.perMinute ? Math.max(1, windows.minuteStartMs + MINUTE_MS - nowMs) : 0
    const hourWait = hourCount >= limits.perHour ? Math.max(1, windows.hourStartMs + HOUR_MS - nowMs) : 0
    return Math.max(minuteWait, hourWait, quotaMs)
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
    if (limits.perDay !== undefined || limits.perMonth !== undefined)
      return decideFixedQuotas(tenantKey, limits, cost, true, nowMs)
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
      : limits.perDay !== undefined || limits.perMonth !== undefined
        ? decideFixedQuotas(tenantKey, limits, 1, false, now())
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
      const { quotas } = windows
      if (quotas !== null && quotas.dayCount > 0) quotas.dayCount--
      if (quotas !== null && quotas.monthCount > 0) quotas.monthCount--
      if (quotas !== null) changedQuotas.add(windows)
    },
    quotaCounts() {
      const rows: QuotaCountRow[] = []
      for (const { key, quotas } of changedQuotas) {
        if (quotas === null) continue
        if (quotas.dayEndMs > 0) {
          const startMs = quotas.dayEndMs - DAY_MS
          rows.push({ tenantKey: key, window: 'day', startMs, endMs: quotas.dayEndMs, count: quotas.dayCount })
        }
        if (quotas.monthEndMs > 0) {
          const { monthStartMs: startMs, monthEndMs: endMs, monthCount: count } = quotas
          rows.push({ tenantKey: key, window: 'month', startMs, endMs, count })
        }
      }
      changedQuotas.clear()
      return rows
    },
    restoreQuotaCounts(rows) {
      const valid = [...rows].map(checkedRow)
      const nowMs = now()
      let loaded = 0
      for (const row of valid) {
        if (row.endMs <= nowMs) continue
        let windows = tenants.get(row.tenantKey)
        if (windows === undefined) {
          windows = add(row.tenantKey, nowMs, 0)
          windows.minuteStartMs = windows.hourStartMs = NEVER_STARTED_MS
        }
        const quotas = (windows.quotas ??= { dayEndMs: 0, dayCount: 0, monthStartMs: 0, monthEndMs: 0, monthCount: 0 })
        // A later window held already wins over the row; the same window keeps the larger count.
        if (row.window === 'day') {
          if (quotas.dayEndMs > row.endMs) continue
          quotas.dayCount = quotas.dayEndMs === row.endMs ? Math.max(quotas.dayCount, row.count) : row.count
          quotas.dayEndMs = row.endMs
        } else {
          if (quotas.monthEndMs > row.endMs) continue
          quotas.monthCount = quotas.monthEndMs === row.endMs ? Math.max(quotas.monthCount, row.count) : row.count
          quotas.monthStartMs = row.startMs
          quotas.monthEndMs = row.endMs
        }
        loaded++
      }
      return loaded
    },
    consume: (tenantKey, limits, cost) => Promise.resolve(consumeSync(tenantKey, limits, cost)),
    peek: (tenantKey, limits) => Promise.resolve(peekSync(tenantKey, limits)),
    get trackedTenants() {
      return tenants.size
    },
  }
}

/** A saved row as `restoreQuotaCounts` takes it, or a `SaikuConfigError` naming the field. */
function checkedRow(row: QuotaCountRow, index: number): QuotaCountRow {
  const at = `restoreQuotaCounts rows[${index}]`
  if (typeof row !== 'object' || row === null) throw new SaikuConfigError(at, 'a quota count row', row)
  const { tenantKey, window, startMs, endMs, count } = row
  if (typeof tenantKey !== 'string' || tenantKey === '')
    throw new SaikuConfigError(`${at}.tenantKey`, 'a non-empty string', tenantKey)
  if (window !== 'day' && window !== 'month') throw new SaikuConfigError(`${at}.window`, "'day' or 'month'", window)
  if (!Number.isSafeInteger(startMs)) throw new SaikuConfigError(`${at}.startMs`, 'a whole number of ms', startMs)
  if (!Number.isSafeInteger(endMs) || endMs <= startMs)
    throw new SaikuConfigError(`${at}.endMs`, 'a whole number of ms after startMs', endMs)
  if (window === 'day' && (endMs - startMs !== DAY_MS || endMs % DAY_MS !== 0))
    throw new SaikuConfigError(`${at}`, 'a UTC day (startMs at 00:00 UTC, endMs a day later)', `${startMs}–${endMs}`)
  if (!Number.isSafeInteger(count) || count < 0)
    throw new SaikuConfigError(`${at}.count`, 'a whole number from 0', count)
  return row
}
