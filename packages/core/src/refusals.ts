import type { BearerProblem } from './bearer.js'
import type { AuthDecision, AuthRequest, DecisionReason, UnverifiedDecision } from './decision.js'
import { asStoreError, type WireCode } from './errors.js'
import type { FailureBudget } from './failure-budget.js'
import type { DecisionReporter } from './hooks.js'
import {
  bearerChallenge,
  bindingWindow,
  errorResponse,
  retryAfterSeconds,
  type ErrorResponse,
  type HeaderMap,
} from './http.js'
import type { LimitDecision } from './limiter.js'
import type { CoreMetrics } from './metrics.js'
import type { ResolvedOptions } from './options.js'
import type { WindowLimits } from './tiers.js'

const SIGNED_TOKEN_MESSAGE = 'Access token invalid, expired or revoked.'
const ADDRESS_NOT_ALLOWED_MESSAGE = 'This API key cannot be used from this address.'
const LOOKUPS_BUSY_MESSAGE = 'Too many API keys from this address are being looked up at once. Retry shortly.'
const INVALID_REQUEST_MESSAGE = 'Send exactly one API key, in one Authorization header: "Authorization: Bearer <key>".'

type Ids = { readonly keyId?: string; readonly tenantId?: string }

/** What refusing needs: the options, the hooks, and the failed-authentication budget. */
export interface RefusalParts {
  readonly options: ResolvedOptions
  readonly report: DecisionReporter
  readonly reportError: (error: Error) => void
  readonly metrics: CoreMetrics | null
  readonly failureBudget: FailureBudget | null
  /** The client address as the failure budget counts it. */
  readonly clientOf: (request: AuthRequest) => string
}

/** Every refusal the pipeline makes, each reported; report-only authentication admits those of the credentials. */
export interface Refusals {
  /**
   * What an Authorization header without a usable token gets: 401 without credentials or with a
   * malformed one (counted against the client), 400 for more than one credential. `nowMs`: the clock as the
   * pipeline read it, so the budget need not read it again.
   */
  ofBearer(request: AuthRequest, problem: BearerProblem, nowMs?: number): AuthDecision
  /**
   * 401, counted against the client; past its budget, 429 instead. `nowMs` as for `ofBearer`.
   * `viaLookup`: the answer took a store lookup, so it counts towards closing the store to the client too.
   */
  failed(
    request: AuthRequest,
    reason: DecisionReason,
    ids?: Ids,
    signed?: boolean,
    nowMs?: number,
    viaLookup?: boolean,
  ): AuthDecision
  /**
   * 503 for a key whose stored record holds no usable digest: the store's fault (reported when the record
   * was loaded), never report-only. It is still a key that did not verify, so it counts against the client
   * like `failed` (`viaLookup` alike), and past its budget the answer is the 429.
   */
  invalidKeyRecord(request: AuthRequest, nowMs?: number, viaLookup?: boolean): AuthDecision
  /**
   * 403: a verified key (or a token exchanged from one) from an address its allowlist leaves out. Counted against
   * no one (the secret was right); under report-only authentication reported and let through like the 401s.
   */
  addressNotAllowed(request: AuthRequest, ids: Ids): AuthDecision
  /** 429: the client spent its failed-authentication budget. */
  tooManyFailures(request: AuthRequest, waitMs: number): AuthDecision
  /**
   * The decision this authenticator gave a request it let through under report-only authentication, when the
   * request carries its `unverified` (mounted twice): null otherwise.
   */
  letThroughBefore(unverified: unknown): UnverifiedDecision | null
  /** 503: the client has its most store lookups in flight and queued; no failure of its own. */
  lookupsBusy(request: AuthRequest, waitMs: number): ErrorResponse
  /** Any other refusal: 402, 429, 500, 503. */
  refuse(
    request: AuthRequest,
    code: WireCode,
    reason: DecisionReason,
    ids: Ids,
    message?: string,
    headers?: HeaderMap,
    /** A 429 of a day or month quota, rather than of the minute or hour window (usage history tells them apart). */
    quota?: boolean,
  ): ErrorResponse
  /** 503, the failure reported to `onError`. */
  keyStoreFailed(request: AuthRequest, error: unknown): ErrorResponse
  /** User code that throws or returns nonsense (a predicate, a cost function): still a JSON answer, never a rejection. */
  unexpected(request: AuthRequest, error: unknown, reason?: DecisionReason, ids?: Ids): ErrorResponse
}

export function createRefusals(parts: RefusalParts): Refusals {
  const { options, report, reportError, metrics, failureBudget, clientOf } = parts
  const { realm } = options
  const reportOnly = options.reportOnly.authentication
  // The refusals that floods are made of, built once: adapters only read them.
  const missing = Object.freeze(
    errorResponse('unauthorized', undefined, { 'www-authenticate': bearerChallenge(realm) }),
  )
  const invalidTokenChallenge = { 'www-authenticate': bearerChallenge(realm, 'invalid_token') }
  const invalid = Object.freeze(errorResponse('unauthorized', undefined, invalidTokenChallenge))
  // The same challenge for a signed token, whose body names the token rather than an API key.
  const invalidSigned = Object.freeze(errorResponse('unauthorized', SIGNED_TOKEN_MESSAGE, invalidTokenChallenge))
  const addressRefused = Object.freeze(errorResponse('forbidden', ADDRESS_NOT_ALLOWED_MESSAGE))
  const ambiguous = Object.freeze(
    errorResponse('invalid_request', INVALID_REQUEST_MESSAGE, {
      'www-authenticate': bearerChallenge(realm, 'invalid_request'),
    }),
  )

  function refuse(
    request: AuthRequest,
    code: WireCode,
    reason: DecisionReason,
    ids: Ids,
    message?: string,
    headers?: HeaderMap,
    quota = false,
  ): ErrorResponse {
    const refusal = errorResponse(code, message, headers)
    report(request, refusal.status, code, reason, ids.keyId ?? null, ids.tenantId ?? null, true, quota)
    return refusal
  }

  // What each request let through under report-only authentication was told, by the refusal it carries on.
  const letThrough = new WeakMap<object, UnverifiedDecision>()

  function ofCredentials(request: AuthRequest, reason: DecisionReason, ids: Ids, refusal: ErrorResponse): AuthDecision {
    metrics?.failedAuthentication(reason, !reportOnly)
    report(request, refusal.status, refusal.code, reason, ids.keyId ?? null, ids.tenantId ?? null, !reportOnly)
    if (!reportOnly) return refusal
    const unverified: UnverifiedDecision = {
      ...refusal,
      unverified: { status: refusal.status, code: refusal.code, reason },
    }
    letThrough.set(unverified.unverified, unverified)
    return unverified
  }

  // A flood from one address is answered with a handful of bodies: one per Retry-After value, built once.
  const tooManyByWait = new Map<number, ErrorResponse>()
  function tooManyFailures(request: AuthRequest, waitMs: number): AuthDecision {
    const retryAfter = Math.max(1, Math.ceil(waitMs / 1000))
    let refusal = tooManyByWait.get(retryAfter)
    if (refusal === undefined) {
      if (tooManyByWait.size >= 64) tooManyByWait.clear()
      refusal = Object.freeze(
        errorResponse('rate_limited', tooManyFailuresMessage(retryAfter), { 'retry-after': String(retryAfter) }),
      )
      tooManyByWait.set(retryAfter, refusal)
    }
    return ofCredentials(request, 'too_many_failures', {}, refusal)
  }

  function failed(
    request: AuthRequest,
    reason: DecisionReason,
    ids: Ids = {},
    signed = false,
    nowMs?: number,
    viaLookup = false,
  ): AuthDecision {
    if (failureBudget !== null) {
      const waitMs = failureBudget.fail(clientOf(request), nowMs, viaLookup)
      if (waitMs > 0) return tooManyFailures(request, waitMs)
    }
    return ofCredentials(request, reason, ids, signed ? invalidSigned : invalid)
  }

  function invalidKeyRecord(request: AuthRequest, nowMs?: number, viaLookup = false): AuthDecision {
    if (failureBudget !== null) {
      const waitMs = failureBudget.fail(clientOf(request), nowMs, viaLookup)
      if (waitMs > 0) return tooManyFailures(request, waitMs)
    }
    metrics?.failedAuthentication('invalid_key_record', true)
    return refuse(request, 'service_unavailable', 'invalid_key_record', {})
  }

  return {
    ofBearer(request, problem, nowMs) {
      if (problem.kind === 'missing') return ofCredentials(request, 'missing_credentials', {}, missing)
      if (problem.kind === 'ambiguous') return ofCredentials(request, 'ambiguous_credentials', {}, ambiguous)
      return failed(request, 'malformed_credentials', {}, false, nowMs)
    },
    failed,
    invalidKeyRecord,
    tooManyFailures,
    addressNotAllowed: (request, ids) => ofCredentials(request, 'address_not_allowed', ids, addressRefused),
    letThroughBefore(unverified) {
      return typeof unverified === 'object' && unverified !== null ? (letThrough.get(unverified) ?? null) : null
    },
    lookupsBusy(request, waitMs) {
      const retryAfter = Math.max(1, Math.ceil(waitMs / 1000))
      return refuse(request, 'service_unavailable', 'lookups_in_flight', {}, LOOKUPS_BUSY_MESSAGE, {
        'retry-after': String(retryAfter),
      })
    },
    refuse,
    keyStoreFailed(request, error) {
      reportError(asStoreError(error, 'key_store', 'key store failed'))
      return refuse(request, 'service_unavailable', 'key_store_unavailable', {})
    },
    unexpected(request, error, reason = 'internal_error', ids = {}) {
      reportError(error instanceof Error ? error : new Error(String(error)))
      return refuse(request, 'internal_error', reason, ids)
    },
  }
}

export function tooManyFailuresMessage(retryAfter: number): string {
  return `Too many failed authentication attempts from this address. Retry in ${retryAfter} s.`
}

/** The 429 of a spent window: what it allows, what this request costs, when to come back. */
export function rateLimitedMessage(rateLimit: LimitDecision, cost: number, nowMs = Date.now()): string {
  const binding = bindingWindow(rateLimit, cost)
  if (binding.window === 'day' || binding.window === 'month') {
    // A quota resets at a calendar instant, a whole second: say which, in UTC (rounded, as a
    // backend on another clock tells the wait from its own reading).
    const resetsAt = new Date(Math.round((nowMs + binding.resetMs) / 1000) * 1000)
      .toISOString()
      .replace(/\.\d{3}Z$/, 'Z')
    const quota = `${binding.window === 'day' ? 'Daily' : 'Monthly'} quota of ${binding.limit} requests`
    const spent = cost === 1 ? `${quota} used` : `${quota}: this request costs ${cost}; ${binding.remaining} left`
    return `${spent}; it resets at ${resetsAt}.`
  }
  const costs = cost === 1 ? '' : ` This request costs ${cost}; ${binding.remaining} left.`
  return `Rate limit exceeded: ${binding.limit} requests per ${binding.window}.${costs} Retry in ${retryAfterSeconds(rateLimit)} s.`
}

/** A cost no window can ever hold: a refusal that says so, with no Retry-After to wait out. */
export function costExceedsLimitMessage(limits: WindowLimits, cost: number): string {
  const [limit, window] = cost > limits.perMinute ? [limits.perMinute, 'minute'] : [limits.perHour, 'hour']
  return `This request costs ${cost} units, more than the ${limit} per ${window} this plan allows: it can never be admitted.`
}
