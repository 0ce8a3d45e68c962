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
  return { tenantId, limits, minute: windowUsage(decision.minute), hour: windowUsage(decision.hour) }
}
