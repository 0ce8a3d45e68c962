/**
 * The reference model of the limiter's documented semantics, which every
 * backend is compared with (memory, Redis, the rate-limiter-flexible adapter):
 *
 * - two fixed windows per tenant, a minute and an hour, each starting at the
 *   first request admitted after the previous one of its kind ended, and each
 *   ending at its start plus its length, whatever the other window does;
 * - a request of cost n (a whole number, at least 1) is admitted only if both
 *   windows have room for n, and then counts n in both; a refused request writes
 *   nothing (no count, no window start), and waits until every window short of
 *   room for n starts over;
 * - a clock that steps back keeps the counts: a window ends when the clock
 *   reaches its end again;
 * - with `maxTenants`, the tenant seen least recently is forgotten first;
 * - the quotas (`perDay`, `perMonth`) follow {@link CalendarQuotas}, in both models.
 *
 * Kept deliberately small and obvious: it is the specification, not an implementation.
 */
import {
  dayWindowAt,
  monthWindowAt,
  type CalendarWindow,
  type LimitDecision,
  type WindowLimits,
  type WindowState,
} from '@saiku/core'

export const MINUTE_MS = 60_000
export const HOUR_MS = 3_600_000

interface ModelWindow {
  start: number
  count: number
}

interface ModelTenant {
  minute: ModelWindow | null
  hour: ModelWindow | null
}

export interface ModelOptions {
  readonly maxTenants?: number
  readonly minuteMs?: number
  readonly hourMs?: number
}

interface CalendarCount {
  readonly startMs: number
  readonly endMs: number
  readonly count: number
}

interface QuotaCounts {
  day: CalendarCount | null
  month: CalendarCount | null
}

type QuotaName = 'day' | 'month'

/**
 * The reference model of the quotas, the same under fixed and rolling minute and hour windows:
 *
 * - a quota counts in calendar windows: the UTC day, and the month that starts on day
 *   `limits.monthStartDay` (1 when absent; the last day of a shorter month) at 00:00 UTC;
 * - a window counted in lives until its end, even when the clock steps back before its start;
 *   after its end, the window that holds the clock is the current one, counting 0;
 * - a quota a tenant's limits do not set is neither counted nor reported (an omitted `day` or
 *   `month` in the decision), and a quota set again later finds whatever its window still counts;
 * - a request is admitted only if every window (minute, hour and each quota) has room for its
 *   cost, and then counts it in all; a refused one writes nothing and waits until every window
 *   short of room starts over: for a quota, its window's end;
 * - a window's `resetMs` is the time to its end (at least 1); `used` is its count.
 */
export class CalendarQuotas {
  private readonly tenants = new Map<string, QuotaCounts>()

  private static current(counted: CalendarCount | null, at: CalendarWindow, now: number): CalendarCount {
    return counted !== null && now < counted.endMs ? counted : { startMs: at.startMs, endMs: at.endMs, count: 0 }
  }

  private windows(tenantKey: string, limits: WindowLimits, now: number) {
    const tenant = this.tenants.get(tenantKey)
    const out: { name: QuotaName; limit: number; window: CalendarCount }[] = []
    if (limits.perDay !== undefined)
      out.push({
        name: 'day',
        limit: limits.perDay,
        window: CalendarQuotas.current(tenant?.day ?? null, dayWindowAt(now), now),
      })
    if (limits.perMonth !== undefined) {
      const month = monthWindowAt(limits.monthStartDay ?? 1, now)
      out.push({
        name: 'month',
        limit: limits.perMonth,
        window: CalendarQuotas.current(tenant?.month ?? null, month, now),
      })
    }
    return out
  }

  /** Whether every quota has room for `cost`, and how long until each short one starts over. */
  room(tenantKey: string, limits: WindowLimits, now: number, cost: number): { ok: boolean; waitMs: number } {
    let waitMs = 0
    for (const { limit, window } of this.windows(tenantKey, limits, now))
      if (window.count + cost > limit) waitMs = Math.max(waitMs, window.endMs - now)
    return { ok: waitMs === 0, waitMs }
  }

  /** Counts `cost` in every quota the limits set (call only for an admitted request). */
  count(tenantKey: string, limits: WindowLimits, now: number, cost: number): void {
    const tenant = this.tenants.get(tenantKey) ?? { day: null, month: null }
    for (const { name, window } of this.windows(tenantKey, limits, now))
      tenant[name] = { ...window, count: window.count + cost }
    this.tenants.set(tenantKey, tenant)
  }

  /** The decision's `day` and `month` fields, for the quotas the limits set. */
  states(tenantKey: string, limits: WindowLimits, now: number): { day?: WindowState; month?: WindowState } {
    const states: { day?: WindowState; month?: WindowState } = {}
    for (const { name, limit, window } of this.windows(tenantKey, limits, now)) {
      states[name] = {
        window: name,
        limit,
        remaining: Math.max(0, limit - window.count),
        used: window.count,
        resetMs: Math.max(1, window.endMs - now),
      }
    }
    return states
  }

  /** The ends of the tenant's quota windows at `now`, for steps aimed at their edges. */
  ends(tenantKey: string, limits: WindowLimits, now: number): number[] {
    return this.windows(tenantKey, limits, now).map(({ window }) => window.endMs)
  }

  forget(tenantKey: string): void {
    this.tenants.delete(tenantKey)
  }
}

export class LimiterModel {
  private readonly tenants = new Map<string, ModelTenant>()
  private readonly quotas = new CalendarQuotas()
  private readonly maxTenants: number
  private readonly minuteMs: number
  private readonly hourMs: number
  /** How often a tenant with a live window was forgotten. */
  evictions = 0

  constructor(options: ModelOptions = {}) {
    this.maxTenants = options.maxTenants ?? Infinity
    this.minuteMs = options.minuteMs ?? MINUTE_MS
    this.hourMs = options.hourMs ?? HOUR_MS
  }

  private live(window: ModelWindow | null, length: number, now: number): ModelWindow | null {
    return window !== null && now < window.start + length ? window : null
  }

  private view(
    name: 'minute' | 'hour',
    limit: number,
    window: ModelWindow | null,
    length: number,
    now: number,
  ): WindowState {
    const count = window?.count ?? 0
    return {
      window: name,
      limit,
      remaining: Math.max(0, limit - count),
      used: count,
      resetMs: window === null ? length : Math.max(1, window.start + length - now),
    }
  }

  private decide(tenantKey: string, limits: WindowLimits, now: number, count: boolean, cost: number): LimitDecision {
    const tenant = this.tenants.get(tenantKey)
    let minute = this.live(tenant?.minute ?? null, this.minuteMs, now)
    let hour = this.live(tenant?.hour ?? null, this.hourMs, now)
    const minuteRoom = (minute?.count ?? 0) + cost <= limits.perMinute
    const hourRoom = (hour?.count ?? 0) + cost <= limits.perHour
    const quotaRoom = this.quotas.room(tenantKey, limits, now, cost)
    const admitted = minuteRoom && hourRoom && quotaRoom.ok
    if (admitted && count) {
      minute = { start: minute?.start ?? now, count: (minute?.count ?? 0) + cost }
      hour = { start: hour?.start ?? now, count: (hour?.count ?? 0) + cost }
      this.store(tenantKey, { minute, hour }, now)
      this.quotas.count(tenantKey, limits, now, cost)
    } else if (count && tenant !== undefined) {
      this.touch(tenantKey, tenant)
    }
    const minuteState = this.view('minute', limits.perMinute, minute, this.minuteMs, now)
    const hourState = this.view('hour', limits.perHour, hour, this.hourMs, now)
    const waits = [minuteRoom ? 0 : minuteState.resetMs, hourRoom ? 0 : hourState.resetMs, quotaRoom.waitMs]
    return {
      admitted,
      minute: minuteState,
      hour: hourState,
      ...this.quotas.states(tenantKey, limits, now),
      retryAfterMs: admitted ? 0 : Math.max(...waits),
    }
  }

  /** Seen now: the most recently seen tenant goes last. */
  private touch(tenantKey: string, tenant: ModelTenant): void {
    this.tenants.delete(tenantKey)
    this.tenants.set(tenantKey, tenant)
  }

  private store(tenantKey: string, tenant: ModelTenant, now: number): void {
    if (!this.tenants.has(tenantKey) && this.tenants.size >= this.maxTenants) {
      const [oldestKey, oldest] = this.tenants.entries().next().value as [string, ModelTenant]
      if (this.live(oldest.minute, this.minuteMs, now) !== null || this.live(oldest.hour, this.hourMs, now) !== null)
        this.evictions++
      this.tenants.delete(oldestKey)
      this.quotas.forget(oldestKey)
    }
    this.tenants.delete(tenantKey)
    this.tenants.set(tenantKey, tenant)
  }

  /** When the tenant's live windows end, for steps aimed at their edges. */
  windowEnds(tenantKey: string, now: number): { minute: number | null; hour: number | null } {
    const tenant = this.tenants.get(tenantKey)
    const minute = this.live(tenant?.minute ?? null, this.minuteMs, now)
    const hour = this.live(tenant?.hour ?? null, this.hourMs, now)
    return {
      minute: minute === null ? null : minute.start + this.minuteMs,
      hour: hour === null ? null : hour.start + this.hourMs,
    }
  }

  /** The ends of the tenant's quota windows (day, month) at `now`, for steps aimed at their edges. */
  quotaEnds(tenantKey: string, limits: WindowLimits, now: number): number[] {
    return this.quotas.ends(tenantKey, limits, now)
  }

  consume(tenantKey: string, limits: WindowLimits, now: number, cost = 1): LimitDecision {
    return this.decide(tenantKey, limits, now, true, cost)
  }

  /** What a request would be told now, without counting it: remaining is what is left before it. */
  peek(tenantKey: string, limits: WindowLimits, now: number): LimitDecision {
    return this.decide(tenantKey, limits, now, false, 1)
  }
}

/** Sub-windows per rolling window, as in the backends. */
export const SUBWINDOWS = 10

interface Counted {
  readonly index: number
  readonly cost: number
}

/**
 * The reference model of rolling windows (`windows: 'rolling'`):
 *
 * - each window of length W is cut into 10 sub-windows of W/10, aligned on the
 *   epoch; what a tenant admitted in a sub-window is remembered by its index;
 * - at time t a window counts what was admitted in the current sub-window (that
 *   of t, or the newest one counted if the clock stepped back before it) and in
 *   the 10 before it;
 * - a request of cost n is admitted only if both windows have room for n, and
 *   then counted in both, in the current sub-window; a refused one writes nothing;
 * - a window short of room reports how long until it has room, with nothing else
 *   admitted meanwhile; one with room, until all it counts has dropped out (its
 *   length when it counts nothing). `Retry-After` is the longer wait of the two.
 *
 * Every admission is kept in a list and summed: the specification, not an implementation.
 */
export class RollingLimiterModel {
  private readonly tenants = new Map<string, { minute: Counted[]; hour: Counted[] }>()
  private readonly quotas = new CalendarQuotas()
  private readonly minuteMs: number
  private readonly hourMs: number
  readonly evictions = 0

  constructor(options: Omit<ModelOptions, 'maxTenants'> = {}) {
    this.minuteMs = options.minuteMs ?? MINUTE_MS
    this.hourMs = options.hourMs ?? HOUR_MS
  }

  private window(
    name: 'minute' | 'hour',
    counted: readonly Counted[],
    lengthMs: number,
    limit: number,
    now: number,
    cost: number,
  ) {
    const width = lengthMs / SUBWINDOWS
    const current = Math.max(Math.floor(now / width), ...counted.map((c) => c.index))
    const from = (oldest: number) => counted.filter((c) => c.index >= oldest).reduce((sum, c) => sum + c.cost, 0)
    const used = from(current - SUBWINDOWS)
    let wait = 0
    if (used + cost > limit) {
      let step = 1
      while (step <= SUBWINDOWS && from(current - SUBWINDOWS + step) + cost > limit) step++
      wait = (current + step) * width - now
    }
    const live = counted.filter((c) => c.index >= current - SUBWINDOWS && c.cost > 0)
    const full = live.length === 0 ? lengthMs : (Math.max(...live.map((c) => c.index)) + SUBWINDOWS + 1) * width - now
    return { current, used, wait, full }
  }

  private static state(name: 'minute' | 'hour', limit: number, used: number, resetMs: number): WindowState {
    return { window: name, limit, remaining: Math.max(0, limit - used), used, resetMs: Math.max(1, resetMs) }
  }

  private decide(tenantKey: string, limits: WindowLimits, now: number, count: boolean, cost: number): LimitDecision {
    const tenant = this.tenants.get(tenantKey) ?? { minute: [], hour: [] }
    const minute = this.window('minute', tenant.minute, this.minuteMs, limits.perMinute, now, cost)
    const hour = this.window('hour', tenant.hour, this.hourMs, limits.perHour, now, cost)
    const quotaRoom = this.quotas.room(tenantKey, limits, now, cost)
    const admitted = minute.wait === 0 && hour.wait === 0 && quotaRoom.ok
    let after = { minute, hour }
    if (admitted && count) {
      tenant.minute.push({ index: minute.current, cost })
      tenant.hour.push({ index: hour.current, cost })
      this.tenants.set(tenantKey, tenant)
      this.quotas.count(tenantKey, limits, now, cost)
      after = {
        minute: this.window('minute', tenant.minute, this.minuteMs, limits.perMinute, now, cost),
        hour: this.window('hour', tenant.hour, this.hourMs, limits.perHour, now, cost),
      }
    }
    return {
      admitted,
      minute: RollingLimiterModel.state(
        'minute',
        limits.perMinute,
        after.minute.used,
        minute.wait > 0 ? minute.wait : after.minute.full,
      ),
      hour: RollingLimiterModel.state(
        'hour',
        limits.perHour,
        after.hour.used,
        hour.wait > 0 ? hour.wait : after.hour.full,
      ),
      ...this.quotas.states(tenantKey, limits, now),
      retryAfterMs: admitted ? 0 : Math.max(minute.wait, hour.wait, quotaRoom.waitMs),
    }
  }

  /** The next sub-window boundary of each window, for steps aimed at the edges. */
  windowEnds(_tenantKey: string, now: number): { minute: number | null; hour: number | null } {
    const next = (length: number) => (Math.floor(now / (length / SUBWINDOWS)) + 1) * (length / SUBWINDOWS)
    return { minute: next(this.minuteMs), hour: next(this.hourMs) }
  }

  /** The ends of the tenant's quota windows (day, month) at `now`, for steps aimed at their edges. */
  quotaEnds(tenantKey: string, limits: WindowLimits, now: number): number[] {
    return this.quotas.ends(tenantKey, limits, now)
  }

  consume(tenantKey: string, limits: WindowLimits, now: number, cost = 1): LimitDecision {
    return this.decide(tenantKey, limits, now, true, cost)
  }

  peek(tenantKey: string, limits: WindowLimits, now: number): LimitDecision {
    return this.decide(tenantKey, limits, now, false, 1)
  }

  /** Whether a request of this cost would be admitted at `now`; changes nothing. */
  wouldAdmit(tenantKey: string, limits: WindowLimits, now: number, cost: number): boolean {
    return this.decide(tenantKey, limits, now, false, cost).admitted
  }
}
