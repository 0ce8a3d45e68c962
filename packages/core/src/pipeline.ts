import { markedPrincipal, type AdmissionMark, type AdmissionMarks } from './admission-marks.js'
import { extractBearer } from './bearer.js'
import type { Counter } from './counter.js'
import type { AdmittedDecision, AuthDecision, AuthRequest, DecisionReason, Outcome } from './decision.js'
import { ERROR_STATUS } from './errors.js'
import { KEY_ID_LENGTH } from './keys.js'
import type { FailureBudget } from './failure-budget.js'
import type { DecisionReporter } from './hooks.js'
import { addRateLimitHeaders, bindingWindow, retryAfterSeconds, type HeaderMap } from './http.js'
import type { LimitDecision } from './limiter.js'
import type { Lookup, LookupAnswered } from './lookups.js'
import type { ResolvedOptions } from './options.js'
import { isPreflight, PASSED_PREFLIGHT } from './preflight.js'
import { costExceedsLimitMessage, rateLimitedMessage, type Refusals } from './refusals.js'
import { requestCost, type CostProblem } from './request-cost.js'
import { requestIp, routePath } from './route-path.js'
import { hasActiveSubscription, policyAt, type CachedTenant, type TenantLoader } from './tenants.js'
import type { WindowLimits } from './tiers.js'
import { callHook, type HookAnswer } from './user-hooks.js'
import type { KeyVerifier, VerificationFailure, VerifiedCredential, VerifyResult } from './verifier.js'

/** Failures that say the key itself no longer works (as opposed to a wrong secret anyone can send for its key ID). */
function withdrawn(reason: VerificationFailure): boolean {
  return reason === 'revoked' || reason === 'expired' || reason === 'unknown_key'
}

/** What the stages work with; `createAuthenticator` builds each from the options. */
export interface PipelineParts {
  readonly options: ResolvedOptions
  readonly now: () => number
  readonly verifier: KeyVerifier
  /** What the cache could not answer, asked of the verifier through the failure budget (`lookups.ts`). */
  readonly lookUp: (request: AuthRequest, token: string, answered: LookupAnswered) => Outcome
  readonly tenants: TenantLoader
  readonly counter: Counter
  readonly marks: AdmissionMarks
  readonly failureBudget: FailureBudget | null
  readonly refusals: Refusals
  readonly report: DecisionReporter
  readonly reportError: (error: Error) => void
}

/** A verified request of a tenant with limits: what the counting stages share. */
interface Admission {
  readonly request: AuthRequest
  readonly credential: VerifiedCredential
  readonly tenant: CachedTenant
  readonly limits: WindowLimits
  /** The clock as the tenant stage read it. */
  readonly nowMs: number
}

/**
 * The decision, in stages: credentials → verify (401) → address (403) → tenant → subscription (402)
 * → count (429) → finish. Each stage returns at once when it has nothing to await.
 */
export function createPipeline(parts: PipelineParts): (request: AuthRequest) => Outcome {
  const { options, now, verifier, tenants, counter, marks, failureBudget, refusals, report, reportError } = parts
  const { realm, rateLimitHeaders: headerMode, cost: costOf, subscription } = options
  const passPreflights = options.preflight === 'pass'
  const reportOnlyAuth = options.reportOnly.authentication

  function decide(request: AuthRequest): Outcome {
    // Before anything that counts or reports: a passed preflight is no decision about anyone.
    if (passPreflights && isPreflight(request)) return PASSED_PREFLIGHT
    const admitted = marks.admittedBefore(request.principal)
    if (admitted !== null) {
      report(request, 200, null, 'already_admitted', null, null)
      return { ok: true, principal: admitted, headers: {} }
    }
    if (reportOnlyAuth) {
      // Let through already by this authenticator (mounted twice): its failure was counted and reported once.
      const before = refusals.letThroughBefore(request.unverified)
      if (before !== null) return before
    }
    const credentials = extractBearer(request)
    if (credentials.kind !== 'token') return refusals.ofBearer(request, credentials)
    return verify(request, credentials.token)
  }

  function verify(request: AuthRequest, token: string): Outcome {
    // The common request is answered from the cache; only what needs the store looks at the client's failures.
    const nowMs = now()
    let known: VerifyResult | undefined
    try {
      known = verifier.verifyWithoutIo?.(token, nowMs)
    } catch (error) {
      return refusals.keyStoreFailed(request, error)
    }
    if (known !== undefined) return verifiedStage(request, known, null, false, nowMs, token)
    return parts.lookUp(request, token, (result, lookup, signed) =>
      verifiedStage(request, result, lookup, signed, undefined, token),
    )
  }

  /**
   * `lookup`: the answer took a store lookup through the failure budget (null: from the cache, or a signed token).
   * `readMs`: the clock as read before verifying, when nothing was awaited since.
   */
  function verifiedStage(
    request: AuthRequest,
    verified: VerifyResult,
    lookup: Lookup | null,
    signed: boolean,
    readMs?: number,
    token?: string,
  ): Outcome {
    if (!verified.ok) {
      // A key that no longer works loses its way past the budget, whoever presented it with its secret.
      if (failureBudget !== null && token !== undefined && withdrawn(verified.reason) && !signed)
        failureBudget.distrust(token.slice(8, 8 + KEY_ID_LENGTH))
      if (verified.reason === 'invalid_key_record') return refusals.invalidKeyRecord(request, readMs, lookup !== null)
      return refusals.failed(request, verified.reason, {}, signed, readMs, lookup !== null)
    }
    lookup?.verified()
    const { credential } = verified
    // The secret was right: a refused address spends neither the client's failure budget nor the tenant's limits.
    if (credential.allowlist !== undefined && !credential.allowlist.allows(requestIp(request)))
      return refusals.addressNotAllowed(request, credential)
    const nowMs = readMs ?? now()
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
    // A signed token naming no tenant is told what every other failing token is told, not the API-key wording.
    if (tenant === null) return refusals.failed(request, 'unknown_tenant', credential, credential.type === 'jwt')
    if (!subscription.required || hasActiveSubscription(tenant, nowMs))
      return limitsStage(request, credential, tenant, nowMs)
    // No subscription: only an exempt path goes on. The predicate is user code, perhaps async.
    const exempt = callHook(() => subscription.isExempt(routePath(request), request))
    return exempt instanceof Promise
      ? exempt.then((answer) => exemptionStage(request, credential, tenant, answer, now()))
      : exemptionStage(request, credential, tenant, exempt, nowMs)
  }

  /** A predicate that throws or rejects is a 500, as anything unexpected. */
  function exemptionStage(
    request: AuthRequest,
    credential: VerifiedCredential,
    tenant: CachedTenant,
    exempt: HookAnswer<boolean>,
    nowMs: number,
  ): Outcome {
    if (!exempt.ok) return refusals.unexpected(request, exempt.error)
    if (exempt.value !== true) return refusals.refuse(request, 'payment_required', 'no_subscription', credential)
    return limitsStage(request, credential, tenant, nowMs)
  }

  function limitsStage(
    request: AuthRequest,
    credential: VerifiedCredential,
    tenant: CachedTenant,
    nowMs: number,
  ): Outcome {
    if (tenant.limits === null) {
      reportError(tenant.limitsError!)
      return refusals.refuse(request, 'internal_error', 'misconfigured_tenant', credential)
    }
    const at: Admission = { request, credential, tenant, limits: tenant.limits, nowMs }
    // Already counted by another authenticator on this limiter: its counts stand.
    const counted = marks.countedBefore(request.principal, credential.tenantId)
    return counted === null ? countStage(at) : finish(at, counted, 1)
  }

  function countStage(at: Admission): Outcome {
    if (costOf === undefined) return countCost(at, 1)
    const cost = requestCost(costOf, at.request, at.tenant.view)
    // An async cost: the clock moved while it was awaited.
    return cost instanceof Promise
      ? cost.then((settled) => countCost({ ...at, nowMs: now() }, settled))
      : countCost(at, cost)
  }

  /** A cost that could not be had (thrown, rejected, not a whole number) is a 500, and nothing is counted. */
  function countCost(at: Admission, cost: number | CostProblem): Outcome {
    const { request, credential, limits } = at
    if (typeof cost !== 'number') return refusals.unexpected(request, cost.error, 'invalid_cost', credential)
    if (cost === 0) {
      const seen = counter.peek(credential.tenantId, limits)
      return seen instanceof Promise ? seen.then((read) => admitFree(at, read)) : admitFree(at, seen)
    }
    if (cost > limits.perMinute || cost > limits.perHour) {
      if (at.tenant.reportOnlyLimits) return admitCostExceeding(at)
      const message = costExceedsLimitMessage(limits, cost)
      return refusals.refuse(request, 'rate_limited', 'cost_exceeds_limit', credential, message)
    }
    const counted = counter.consume(credential.tenantId, limits, cost, at.nowMs)
    if (!(counted instanceof Promise)) return finish(at, counted, cost)
    return counted.then(
      (rateLimit) => finish(at, rateLimit, cost),
      (error: unknown) => limiterFailed(at, cost, error),
    )
  }

  /**
   * Cost 0: neither counted nor refused by the limits. The rate-limit fields tell the
   * counts as they stand, where the backend could read them without counting.
   */
  function admitFree(at: Admission, seen: LimitDecision | null): AdmittedDecision {
    const headers: HeaderMap = {}
    // Admitted whatever the counts say: a spent window still admits what costs nothing.
    const rateLimit = seen === null ? null : { ...seen, admitted: true, retryAfterMs: 0 }
    if (rateLimit !== null) addRateLimitHeaders(headers, headerMode, policyAt(at.tenant, at.nowMs), rateLimit)
    return admit(at, 'admitted_free', rateLimit, headers, marks.uncounted)
  }

  /**
   * Report-only limits, a cost no window can hold: reported as the 429 it would have been and admitted,
   * counting nothing. The enforcing 429 carries no rate-limit fields, so neither does this; the principal
   * has the counts as they stand, refused, where the backend can read them.
   */
  function admitCostExceeding(at: Admission): Outcome {
    const { keyId, tenantId } = at.credential
    report(at.request, ERROR_STATUS.rate_limited, 'rate_limited', 'cost_exceeds_limit', keyId, tenantId, false)
    const refused = (seen: LimitDecision | null): AdmittedDecision => {
      // Waiting never admits it: nothing to wait for.
      const rateLimit = seen === null ? null : { ...seen, admitted: false, retryAfterMs: 0 }
      return admit(at, null, rateLimit, {}, marks.uncounted)
    }
    const seen = counter.peek(tenantId, at.limits)
    return seen instanceof Promise ? seen.then(refused) : refused(seen)
  }

  function limiterFailed(at: Admission, cost: number, error: unknown): Outcome {
    const insured = counter.failed(error, at.credential.tenantId, at.limits, cost)
    if (insured === null)
      return refusals.refuse(at.request, 'service_unavailable', 'limiter_unavailable', at.credential)
    return insured.then((rateLimit) => finish(at, rateLimit, cost))
  }

  function finish(at: Admission, rateLimit: LimitDecision | null, cost: number): AuthDecision {
    if (rateLimit === null) return admit(at, 'admitted_without_limits', null, {}, marks.uncounted)
    const headers: HeaderMap = {}
    const policy = policyAt(at.tenant, at.nowMs)
    if (at.tenant.reportOnlyLimits) {
      // Counted as usual (a would-be refusal counts nothing), reported, admitted; no Retry-After.
      // The fields an enforcing run would send, `X-RateLimit-Reset` naming the window short of this cost.
      if (options.reportOnly.rateLimitHeaders) addRateLimitHeaders(headers, headerMode, policy, rateLimit, cost)
      if (rateLimit.admitted) return admit(at, 'admitted', rateLimit, headers, marks.counted)
      const { keyId, tenantId } = at.credential
      report(
        at.request,
        ERROR_STATUS.rate_limited,
        'rate_limited',
        'rate_limited',
        keyId,
        tenantId,
        false,
        isQuota(rateLimit, cost),
      )
      return admit(at, null, rateLimit, headers, marks.counted)
    }
    addRateLimitHeaders(headers, headerMode, policy, rateLimit, cost)
    if (rateLimit.admitted) return admit(at, 'admitted', rateLimit, headers, marks.counted)
    headers['retry-after'] = String(retryAfterSeconds(rateLimit))
    const message = rateLimitedMessage(rateLimit, cost, at.nowMs)
    return refusals.refuse(
      at.request,
      'rate_limited',
      'rate_limited',
      at.credential,
      message,
      headers,
      isQuota(rateLimit, cost),
    )
  }

  /** The principal, reported as `reason` (null: reported already). */
  function admit(
    at: Admission,
    reason: DecisionReason | null,
    rateLimit: LimitDecision | null,
    headers: HeaderMap,
    mark: AdmissionMark,
  ): AdmittedDecision {
    const { credential, tenant } = at
    // Trusted by the budget only now that the whole decision admits the key (never for a 402 or a 429).
    if (failureBudget !== null && credential.type === 'api_key')
      failureBudget.admitted(credential.keyId, credential.tenantId, at.nowMs, credential.expiresAt?.getTime())
    if (reason !== null) report(at.request, 200, null, reason, credential.keyId, credential.tenantId)
    const principal = markedPrincipal(tenant.view, tenant.subscription, credential, at.limits, realm, rateLimit, mark)
    return { ok: true, principal, headers }
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

/** Whether a refusal is the day or month quota's rather than the minute or hour window's. */
function isQuota(rateLimit: LimitDecision, cost: number): boolean {
  const { window } = bindingWindow(rateLimit, cost)
  return window === 'day' || window === 'month'
}
