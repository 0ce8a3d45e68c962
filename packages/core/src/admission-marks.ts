import type { SaikuPrincipal, TenantView } from './decision.js'
import type { LimitDecision } from './limiter.js'
import type { Subscription } from './store.js'
import type { WindowLimits } from './tiers.js'
import type { VerifiedCredential } from './verifier.js'

/**
 * Marks the principals an authenticator made: which one admitted the request (a
 * second mount of it counts nothing) and which limiter counted it (another
 * authenticator on the same limiter, as in nested routers, verifies the request
 * but does not count it again). Registered, so two copies of this module agree.
 */
const admittedMark = Symbol.for('saiku.admitted')

export interface AdmissionMark {
  /** The limiter that counted the request; null when it was admitted without counting. */
  readonly countedBy: object | null
}

type MarkedPrincipal = { [admittedMark]?: AdmissionMark; tenant?: TenantView; rateLimit?: LimitDecision | null }

/** One authenticator's marks, for the limiter it counts with (`identity`). */
export interface AdmissionMarks {
  readonly counted: AdmissionMark
  readonly uncounted: AdmissionMark
  /** The principal this authenticator made for this request already (mounted twice), or null. */
  admittedBefore(principal: unknown): SaikuPrincipal | null
  /** What another authenticator on the same limiter counted for this tenant's request, or null. */
  countedBefore(principal: unknown, tenantId: string): LimitDecision | null
}

/** The principal of an admitted request, carrying `mark` (in the literal: adding it after would cost an allocation). */
export function markedPrincipal(
  tenant: TenantView,
  subscription: Subscription,
  credential: VerifiedCredential,
  limits: WindowLimits,
  realm: string,
  rateLimit: LimitDecision | null,
  mark: AdmissionMark,
): SaikuPrincipal {
  const principal: SaikuPrincipal & MarkedPrincipal = {
    tenant,
    subscription,
    credential,
    limits,
    realm,
    rateLimit,
    [admittedMark]: mark,
  }
  return principal
}

export function createAdmissionMarks(identity: object): AdmissionMarks {
  const counted: AdmissionMark = Object.freeze({ countedBy: identity })
  const uncounted: AdmissionMark = Object.freeze({ countedBy: null })
  return {
    counted,
    uncounted,
    admittedBefore(principal) {
      const mark = (principal as MarkedPrincipal | undefined)?.[admittedMark]
      return mark === counted || mark === uncounted ? (principal as SaikuPrincipal) : null
    },
    countedBefore(principal, tenantId) {
      const prior = principal as MarkedPrincipal | undefined
      if (prior?.[admittedMark]?.countedBy !== identity || prior.tenant?.tenantId !== tenantId) return null
      return prior.rateLimit ?? null
    },
  }
}
