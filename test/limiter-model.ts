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
 * - with `maxTenants`, the tenant seen least recently is forgotten first.
 *
 * Kept deliberately small and obvious: it is the specification, not an implementation.
 */
import type { LimitDecision, WindowLimits, WindowState } from '@saiku/core'

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

export class LimiterModel {
  private readonly tenants = new Map<string, ModelTenant>()
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

  private view(name: 'minute' | 'hour', limit: number, window: ModelWindow | null, length: number, now: number): WindowState {
    const count = window?.count ?? 0
    return { window: name, limit, remaining: Math.max(0, limit - count), resetMs: window === null ? length : Math.max(1, window.start + length - now) }
  }

  private decide(tenantKey: string, limits: WindowLimits, now: number, count: boolean, cost: number): LimitDecision {
    const tenant = this.tenants.get(tenantKey)
    let minute = this.live(tenant?.minute ?? null, this.minuteMs, now)
    let hour = this.live(tenant?.hour ?? null, this.hourMs, now)
    const minuteRoom = (minute?.count ?? 0) + cost <= limits.perMinute
    const hourRoom = (hour?.count ?? 0) + cost <= limits.perHour
    const admitted = minuteRoom && hourRoom
    if (admitted && count) {
      minute = { start: minute?.start ?? now, count: (minute?.count ?? 0) + cost }
      hour = { start: hour?.start ?? now, count: (hour?.count ?? 0) + cost }
      this.store(tenantKey, { minute, hour }, now)
    } else if (count && tenant !== undefined) {
      this.touch(tenantKey, tenant)
    }
    const minuteState = this.view('minute', limits.perMinute, minute, this.minuteMs, now)
    const hourState = this.view('hour', limits.perHour, hour, this.hourMs, now)
    const waits = [minuteRoom ? 0 : minuteState.resetMs, hourRoom ? 0 : hourState.resetMs]
    return { admitted, minute: minuteState, hour: hourState, retryAfterMs: admitted ? 0 : Math.max(...waits) }
  }

  /** Seen now: the most recently seen tenant goes last. */
  private touch(tenantKey: string, tenant: ModelTenant): void {
    this.tenants.delete(tenantKey)
    this.tenants.set(tenantKey, tenant)
  }

  private store(tenantKey: string, tenant: ModelTenant, now: number): void {
    if (!this.tenants.has(tenantKey) && this.tenants.size >= this.maxTenants) {
      const [oldestKey, oldest] = this.tenants.entries().next().value as [string, ModelTenant]
      if (this.live(oldest.minute, this.minuteMs, now) !== null || this.live(oldest.hour, this.hourMs, now) !== null) this.evictions++
      this.tenants.delete(oldestKey)
    }
    this.tenants.delete(tenantKey)
    this.tenants.set(tenantKey, tenant)
  }

  /** When the tenant's live windows end, for steps aimed at their edges. */
  windowEnds(tenantKey: string, now: number): { minute: number | null; hour: number | null } {
    const tenant = this.tenants.get(tenantKey)
    const minute = this.live(tenant?.minute ?? null, this.minuteMs, now)
    const hour = this.live(tenant?.hour ?? null, this.hourMs, now)
    return { minute: minute === null ? null : minute.start + this.minuteMs, hour: hour === null ? null : hour.start + this.hourMs }
  }

  consume(tenantKey: string, limits: WindowLimits, now: number, cost = 1): LimitDecision {
    return this.decide(tenantKey, limits, now, true, cost)
  }

  /** What a request would be told now, without counting it: remaining is what is left before it. */
  peek(tenantKey: string, limits: WindowLimits, now: number): LimitDecision {
    return this.decide(tenantKey, limits, now, false, 1)
  }
}
