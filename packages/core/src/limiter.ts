import type { WindowLimits } from './tiers.js'

// What every limiter backend answers and implements: memory, rate-limiter-flexible, Redis, your own.

/** Minute and hour always; day and month when the limits set `perDay` / `perMonth`. */
export type WindowName = 'minute' | 'hour' | 'day' | 'month'

export interface WindowState {
  readonly window: WindowName
  readonly limit: number
  readonly remaining: number
  /**
   * What the window has counted: more than `limit` once the limits were lowered under a
   * tenant's count (a downgrade), where `remaining` stays 0. Optional for backends of your
   * own; without it, `authenticator.usage()` takes `limit - remaining`, which caps it at the limit.
   */
  readonly used?: number
  /** Until this window's count resets; at least 1. */
  readonly resetMs: number
}

export interface LimitDecision {
  readonly admitted: boolean
  readonly minute: WindowState
  readonly hour: WindowState
  /**
   * The UTC day's quota: present exactly when the limits set `perDay`. A backend of your own that
   * cannot count it must reject such a call rather than leave it out.
   */
  readonly day?: WindowState | undefined
  /** The month's quota (see `WindowLimits.monthStartDay`): present exactly when the limits set `perMonth`. */
  readonly month?: WindowState | undefined
  /** When refused: until every exhausted window (the latest one) admits again. 0 when admitted. */
  readonly retryAfterMs: number
}

/**
 * Counts a tenant's requests in both windows and admits or refuses one,
 * all or nothing: a refused request leaves both counts and both windows as they
 * were. Each window starts at the first request admitted after the previous one
 * ended and lasts its length, independently of the other.
 * Implement it to plug in a backend that decides both windows in one call.
 */
export interface LimiterBackend {
  /**
   * Takes `cost` units (a whole number, at least 1; default 1) from both windows,
   * or nothing: admitted only when each window has at least `cost` left. When
   * refused, `retryAfterMs` is the wait until every window short of `cost` starts
   * over. The authenticator never passes 0 (a free request is not counted) nor a
   * cost above either limit (refused before the backend is asked). A backend
   * written before costs existed ignores the argument and counts 1: use such a
   * backend only with the default cost.
   */
  consume(tenantKey: string, limits: WindowLimits, cost?: number): Promise<LimitDecision>
  /**
   * Optional: what a request would be told now, without counting it, and
   * writing nothing or moving any window (`authenticator.usage()`, dashboards).
   * `remaining` is what is left before such a request; `admitted` whether it
   * would be admitted.
   */
  peek?(tenantKey: string, limits: WindowLimits): Promise<LimitDecision>
  /**
   * How the backend's windows count; default `'fixed'`. The authenticator's `windows`
   * option must match it (a `SaikuConfigError` otherwise).
   */
  readonly windows?: 'fixed' | 'rolling'
  /**
   * True when the backend lives in this process and cannot hang (memory):
   * the authenticator then skips the `limiter.timeoutMs` deadline.
   */
  readonly inProcess?: boolean
  /**
   * Optional: the same decision without a promise, for backends that can decide at once.
   * `nowMs` is passed only to the memory backend the authenticator built on its own clock.
   */
  consumeSync?(tenantKey: string, limits: WindowLimits, cost?: number, nowMs?: number): LimitDecision
  /** Optional: `peek` without a promise. */
  peekSync?(tenantKey: string, limits: WindowLimits): LimitDecision
}
