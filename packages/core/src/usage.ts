import type { LimitDecision, WindowName } from './limiter.js'
import type { WindowLimits } from './tiers.js'

/** One window of `authenticator.usage()`. */
export interface WindowUsage {
  readonly window: WindowName
  readonly quota: number
  readonly used: number
  readonly remaining: number
  /** Seconds until the window starts over; at least 1. */
  readonly resetSeconds: number
}

export interface TenantUsage {
  readonly tenantId: string
  readonly limits: WindowLimits
  readonly minute: WindowUsage | null
  readonly hour: WindowUsage | null
  /** The UTC day's quota: absent when the limits set no `perDay`, null when the counts cannot be read. */
  readonly day?: WindowUsage | null | undefined
  /** The month's quota (billing month, else calendar month): absent when the limits set no `perMonth`, null when the counts cannot be read. */
  readonly month?: WindowUsage | null | undefined
}

function windowUsage(state: LimitDecision['minute']): WindowUsage {
  return {
    window: state.window,
    quota: state.limit,
    // The true count, above the quota after a downgrade; a backend that does not tell it is capped at the quota.
    used: state.used ?? state.limit - state.remaining,
    remaining: state.remaining,
    resetSeconds: Math.max(1, Math.ceil(state.resetMs / 1000)),
  }
}

/**
 * What `authenticator.usage()` answers, from a limiter decision already at hand
 * (a principal's `rateLimit`, a peek): the body and the headers of one request
 * then come from the same read.
 */
export function usageFromDecision(tenantId: string, limits: WindowLimits, decision: LimitDecision): TenantUsage {
  return {
    tenantId,
    limits,
    minute: windowUsage(decision.minute),
    hour: windowUsage(decision.hour),
    ...(decision.day === undefined ? {} : { day: windowUsage(decision.day) }),
    ...(decision.month === undefined ? {} : { month: windowUsage(decision.month) }),
  }
}
