import { extractBearer } from './bearer.js'
import type {
  AdmittedDecision,
  AuthDecision,
  AuthRequest,
  DecisionReason,
  SaikuPrincipal,
  TenantView,
} from './decision.js'
import { asStoreError, ERROR_STATUS, SaikuConfigError, SaikuStoreError } from './errors.js'
import type { FailureBudget } from './failure-budget.js'
import type { DecisionReporter } from './hooks.js'
import { addRateLimitHeaders, retryAfterSeconds, type ErrorResponse, type HeaderMap } from './http.js'
import type { LimitDecision } from './limiter.js'
import type { ChosenLimiter } from './limiter-choice.js'
import { startLookup, type Lookup } from './lookups.js'
import type { ResolvedOptions } from './options.js'
import { costExceedsLimitMessage, rateLimitedMessage, type Refusals } from './refusals.js'
import { routePath } from './route-path.js'
import { hasActiveSubscription, type CachedTenant, type TenantLoader } from './tenants.js'
import { withTimeout } from './timeout.js'
import type { WindowLimits } from './tiers.js'
import type { KeyVerifier, VerifiedCredential, VerifyResult } from './verifier.js'

/** What the stages work with; `createAuthenticator` builds each from the options. */
export interface PipelineParts {
  readonly options: ResolvedOptions
  readonly now: () => number
  readonly verifier: KeyVerifier
  /** A verifier of the user's (or JWT): its answer is awaited under `keyStoreTimeoutMs`. */
  readonly customVerifier: boolean
  readonly tenants: TenantLoader
  readonly limiter: ChosenLimiter
  readonly failureBudget: FailureBudget | null
  readonly refusals: Refusals
  readonly report: DecisionReporter
  readonly reportError: (error: Error) => void
  /** The client address as the failure budget counts it. */
  readonly clientOf: (request: AuthRequest) => string
}

/** A decision, returned at once when nothing had to be awaited: the common request costs no promise hop. */
export type Outcome = AuthDecision | Promise<AuthDecision>

/**
 * Marks the principals an authenticator made: which one admitted the request (a
 * second mount of it counts nothing) and which limiter counted it (another
 * authenticator on the same limiter, as in nested routers, verifies the request
 * but does not count it again). Registered, so two copies of this module agree.
 */
const admittedMark = Symbol.for('saiku.admitted')
interface AdmittedMark {
  /** The limiter that counted the request; null when it was admitted without counting. */
  readonly countedBy: object | null
}
/** A verified request of a tenant with limits: what the counting stages share. */
interface Admission {
  readonly request: AuthRequest
  readonly credential: VerifiedCredential
  readonly tenant: CachedTenant
  readonly limits: WindowLimits
}

type MarkedPrincipal = { [admittedMark]?: AdmittedMark; tenant?: TenantView; rateLimit?: LimitDecision | null }

/**
 * The decision, in stages: credentials → verify (401) → tenant → subscription (402)
 * → count (429) → finish. Each stage returns at once when it has nothing to await.
 */
export function createPipeline(parts: PipelineParts): (request: AuthRequest) => Outcome {
  const { options, now, verifier, tenants, failureBudget, refusals, report, reportError } = parts
  const { limiter, identity: limiterIdentity, timeoutMs: limiterTimeoutMs } = parts.limiter
  const { realm, rateLimitHeaders: headerMode, cost: costOf } = options
  const countedMark: AdmittedMark = Object.freeze({ countedBy: limiterIdentity })
  const uncountedMark: AdmittedMark = Object.freeze({ countedBy: null })

  function decide(request: AuthRequest): Outcome {
    const already = request.principal as MarkedPrincipal | undefined
    const mark = already?.[admittedMark]
    if (mark === countedMark || mark === uncountedMark) {
      report(request, 200, null, 'already_admitted', null, null)
      return { ok: true, principal: already as unknown as SaikuPrincipal, headers: {} }
    }
    const credentials = extractBearer(request)
    if (credentials.kind === 'missing') return refusals.missing(request)
    if (credentials.kind === 'ambiguous') return refusals.ambiguous(request)
    if (credentials.kind !== 'token') return refusals.failed(request, 'malformed_credentials')
    return verify(request, credentials.token)
  }

  function verify(request: AuthRequest, token: string): Outcome {
    const signed = !token.startsWith('sk_')
    let verified: VerifyResult | Promise<VerifyResult>
    let lookup: Lookup | null = null
    try {
      // The common request is answered from the cache; only what needs the store looks at the client's failures.
      const known = verifier.verifyWithoutIo?.(token)
      if (known !== undefined) return verifiedStage(request, known, null, false)
      // Signed tokens need no store and count only when they fail; an API key lookup goes through the budget.
      if (failureBudget !== null && !signed) {
        const started = startLookup(failureBudget, parts.clientOf(request), token, options.verifier !== undefined)
        if (typeof started === 'number') return refusals.tooManyFailures(request, started)
        lookup = started
      }
      verified = verifier.verify(token)
    } catch (error) {
      lookup?.storeFailed()
      return refusals.keyStoreFailed(request, error)
    }
    if (!(verified instanceof Promise)) {
      lookup?.done()
      return verifiedStage(request, verified, lookup, signed)
    }
    const pending = parts.customVerifier
      ? withTimeout(verified, options.keyStoreTimeoutMs, 'key_store', 'verifier')
      : verified
    return pending.then(
      (result) => {
        lookup?.done()
        return verifiedStage(request, result, lookup, signed)
      },
      (error: unknown) => {
        lookup?.storeFailed()
        return refusals.keyStoreFailed(request, error)
      },
    )
  }

  /** `lookup`: the store lookup went through the failure budget; it settles what it spent in advance. */
  function verifiedStage(
    request: AuthRequest,
    verified: VerifyResult,
    lookup: Lookup | null,
    signed: boolean,
  ): Outcome {
    if (!verified.ok)
      return lookup?.spent === true
        ? refusals.alreadyCounted(request, verified.reason)
        : refusals.failed(request, verified.reason, {}, signed)
    lookup?.verified()
    const { credential } = verified
    const nowMs = now()
    if (failureBudget !== null && credential.type === 'api_key') failureBudget.verified(credential.keyId, nowMs)
    const tenant = tenants.cached(credential.tenantId, nowMs)
    if (tenant !== undefined) return tenantStage(request, credential, tenant, nowMs)
    return tenants.loadOrStale(credential.tenantId).then(
      (loaded) => tenantStage(request, credential, loaded, now()),
      (error: unknown) => refusals.keyStoreFailed(request, error),
    )
  }

  function tenantStage(
    request: AuthRequest,
    credential: VerifiedCredential,
    tenant: CachedTenant | null,
    nowMs: number,
  ): Outcome {
    if (tenant === null) return refusals.failed(request, 'unknown_tenant', credential)
    const { subscription } = options
    if (
      subscription.required &&
      !hasActiveSubscription(tenant, nowMs) &&
      !subscription.isExempt(routePath(request), request)
    ) {
      return refusals.refuse(request, 'payment_required', 'no_subscription', credential)
    }
    if (tenant.limits === null) {
      reportError(tenant.limitsError!)
      return refusals.refuse(request, 'internal_error', 'misconfigured_tenant', credential)
    }
    const at: Admission = { request, credential, tenant, limits: tenant.limits }
    // Already counted by another authenticator on this limiter: its counts stand.
    const prior = request.principal as MarkedPrincipal | undefined
    const counted =
      prior?.[admittedMark]?.countedBy === limiterIdentity && prior.tenant?.tenantId === credential.tenantId
    if (counted && prior.rateLimit != null) return finish(at, prior.rateLimit, 1)
    return countStage(at)
  }

  function countStage(at: Admission): Outcome {
    const cost = costOf === undefined ? 1 : requestCost(at)
    if (typeof cost !== 'number') return cost
    if (cost === 0) return free(at)
    if (cost > at.limits.perMinute || cost > at.limits.perHour) {
      return refusals.refuse(
        at.request,
        'rate_limited',
        'cost_exceeds_limit',
        at.credential,
        costExceedsLimitMessage(at.limits, cost),
      )
    }
    const { tenantId } = at.credential
    if (limiter.consumeSync !== undefined) {
      let rateLimit: LimitDecision
      try {
        rateLimit = limiter.consumeSync(tenantId, at.limits, cost)
      } catch (error) {
        return limiterFailed(at, cost, error)
      }
      return finish(at, rateLimit, cost)
    }
    return call(() => limiter.consume(tenantId, at.limits, cost)).then(
      (rateLimit) => finish(at, rateLimit, cost),
      (error: unknown) => limiterFailed(at, cost, error),
    )
  }

  /** The `cost` option's answer, or the 500 for one that throws or is no whole number of units. */
  function requestCost(at: Admission): number | ErrorResponse {
    const { request, credential } = at
    let value: unknown
    try {
      value = costOf!({ method: request.method, path: routePath(request), tenant: at.tenant.view, request })
    } catch (error) {
      return refusals.unexpected(request, error, 'invalid_cost', credential)
    }
    if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value
    const error = new SaikuConfigError('cost', 'a whole number of units, 0 or more', value)
    return refusals.unexpected(request, error, 'invalid_cost', credential)
  }

  /**
   * Cost 0: neither counted nor refused by the limits. The rate-limit fields tell
   * the counts as they stand, read without counting where the backend can; when
   * it cannot, or the read fails (reported to `onError`), they are left out.
   */
  function free(at: Admission): Outcome {
    const { tenantId } = at.credential
    const peekFailed = (error: unknown): null => {
      reportError(asStoreError(error, 'limiter', 'rate limiter peek failed'))
      return null
    }
    if (limiter.peekSync !== undefined) {
      let seen: LimitDecision | null
      try {
        seen = limiter.peekSync(tenantId, at.limits)
      } catch (error) {
        seen = peekFailed(error)
      }
      return admitFree(at, seen)
    }
    if (limiter.peek === undefined) return admitFree(at, null)
    return call(() => limiter.peek!(tenantId, at.limits))
      .catch(peekFailed)
      .then((seen) => admitFree(at, seen))
  }

  function admitFree(at: Admission, seen: LimitDecision | null): AdmittedDecision {
    const headers: HeaderMap = {}
    // Admitted whatever the counts say: a spent window still admits what costs nothing.
    const rateLimit = seen === null ? null : { ...seen, admitted: true, retryAfterMs: 0 }
    if (rateLimit !== null) addRateLimitHeaders(headers, headerMode, at.tenant.policy, rateLimit)
    return admit(at, 'admitted_free', rateLimit, headers, uncountedMark)
  }

  async function limiterFailed(at: Admission, cost: number, error: unknown): Promise<AuthDecision> {
    reportError(error instanceof SaikuStoreError ? error : asStoreError(error, 'limiter', 'rate limiter failed'))
    if (options.failurePolicy.limiter === 'closed') {
      return refusals.refuse(at.request, 'service_unavailable', 'limiter_unavailable', at.credential)
    }
    const { insurance } = parts.limiter
    const counted = insurance?.consume(at.credential.tenantId, at.limits, cost).catch(() => null)
    return finish(at, (await counted) ?? null, cost)
  }

  function finish(at: Admission, rateLimit: LimitDecision | null, cost: number): AuthDecision {
    if (rateLimit === null) return admit(at, 'admitted_without_limits', null, {}, uncountedMark)
    const headers: HeaderMap = {}
    const { policy } = at.tenant
    if (at.tenant.reportOnlyLimits) {
      // Counted as usual (a would-be refusal counts nothing), reported, admitted; no Retry-After.
      if (options.reportOnly.rateLimitHeaders) addRateLimitHeaders(headers, headerMode, policy, rateLimit)
      if (rateLimit.admitted) return admit(at, 'admitted', rateLimit, headers, countedMark)
      const { keyId, tenantId } = at.credential
      report(at.request, ERROR_STATUS.rate_limited, 'rate_limited', 'rate_limited', keyId, tenantId, false)
      return admit(at, null, rateLimit, headers, countedMark)
    }
    addRateLimitHeaders(headers, headerMode, policy, rateLimit, cost)
    if (rateLimit.admitted) return admit(at, 'admitted', rateLimit, headers, countedMark)
    headers['retry-after'] = String(retryAfterSeconds(rateLimit))
    const message = rateLimitedMessage(rateLimit, cost)
    return refusals.refuse(at.request, 'rate_limited', 'rate_limited', at.credential, message, headers)
  }

  /** The principal, reported as `reason` (null: reported already). */
  function admit(
    at: Admission,
    reason: DecisionReason | null,
    rateLimit: LimitDecision | null,
    headers: HeaderMap,
    mark: AdmittedMark,
  ): AdmittedDecision {
    const { credential, tenant } = at
    if (reason !== null) report(at.request, 200, null, reason, credential.keyId, credential.tenantId)
    const { view, subscription } = tenant
    const principal = {
      tenant: view,
      subscription,
      credential,
      limits: at.limits,
      realm,
      rateLimit,
      [admittedMark]: mark,
    }
    return { ok: true, principal, headers }
  }

  /** A limiter call under its deadline; a synchronous throw rejects like a failed call. */
  function call<T>(start: () => Promise<T>): Promise<T> {
    try {
      const promise = start()
      return limiterTimeoutMs === 0 ? promise : withTimeout(promise, limiterTimeoutMs, 'limiter', 'rate limiter')
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)))
    }
  }

  return function check(request) {
    try {
      const outcome = decide(request)
      return outcome instanceof Promise
        ? outcome.catch((error: unknown) => refusals.unexpected(request, error))
        : outcome
    } catch (error) {
      return refusals.unexpected(request, error)
    }
  }
}
