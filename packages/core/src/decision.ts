import type { WireCode } from './errors.js'
import type { ErrorResponse, HeaderMap } from './http.js'
import type { LimitDecision } from './limiter.js'
import type { Subscription } from './store.js'
import type { WindowLimits } from './tiers.js'
import type { VerificationFailure, VerifiedCredential } from './verifier.js'

// What goes into the authenticator and what comes out of it: the seam with the adapters.

/** What an adapter hands in: the parts of a request the decision depends on. */
export interface AuthRequest {
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>
  /** Node's `rawHeaders`, to catch a repeated Authorization header. */
  readonly rawHeaders?: readonly string[] | undefined
  readonly method: string
  /** The original URL (path and query), before any mount point is stripped. */
  readonly url: string
  /**
   * The URL as the app's routes see it where the middleware is mounted (Express
   * `req.url`, Koa `ctx.url`): subscription exemptions are matched against its
   * path. Default: `url`.
   */
  readonly mountedUrl?: string | undefined
  /**
   * A mount prefix that `mountedUrl` still starts with (a Koa router's prefix),
   * removed before exemptions are matched; `:name` stands for one segment.
   */
  readonly mountPrefix?: string | undefined
  /**
   * The client address as the framework's proxy settings resolve it, or a
   * function that returns it: it is read only when needed (failures, hooks).
   */
  readonly ip?: string | (() => string | undefined) | undefined
  /** What the request already carries (`req.saiku`): a request this authenticator admitted is not counted twice. */
  readonly principal?: unknown
  /**
   * What the request already carries (`req.saikuUnverified`): a request this authenticator let through under
   * report-only authentication is not counted twice. Read only under report-only authentication.
   */
  readonly unverified?: unknown
}
/** What the `cost` option is asked about: a verified request of a known tenant. */
export interface CostRequest {
  /** Upper case, as sent. */
  readonly method: string
  /** The path as the app routes it where the middleware is mounted (see `routePath`), without the query. */
  readonly path: string
  readonly tenant: TenantView
  readonly request: AuthRequest
}

/** The spec's `GET /me/tenant` body. */
export interface TenantView {
  readonly tenantId: string
  readonly tenantSlug: string
  readonly tier: string
  readonly connectionName: string
}

/** Who the request speaks for: `req.saiku` / `ctx.state.saiku`. */
export interface SaikuPrincipal {
  readonly tenant: TenantView
  readonly subscription: Subscription
  readonly credential: VerifiedCredential
  readonly limits: WindowLimits
  /** The realm of the authenticator that admitted it, for later challenges (403). */
  readonly realm: string
  /**
   * The counts after this request; null when the limiter failed open. For a
   * request that cost 0, the counts as they stand (read without counting), or
   * null when the backend cannot read them or the read failed. Under report-only
   * limits, a request whose cost no window can hold has the counts as they stand
   * (or null, likewise), with `admitted` false and `retryAfterMs` 0: waiting never admits it.
   */
  readonly rateLimit: LimitDecision | null
}

export interface AdmittedDecision {
  readonly ok: true
  readonly principal: SaikuPrincipal
  /** Rate-limit fields to set on the response. */
  readonly headers: HeaderMap
}

/** What would have been answered, had report-only mode not admitted the request. */
export interface WouldBeRefusal {
  readonly status: number
  readonly code: WireCode
  readonly reason: DecisionReason
}

/**
 * Report-only authentication: the refusal the credentials would have had, which
 * is not to be sent. The request goes on without a principal: adapters set
 * `req.saikuUnverified` / `ctx.state.saikuUnverified` to `unverified`, leave
 * `req.saiku` unset, and send none of these headers. Code that calls the core
 * itself checks `unverified` before answering a decision that is not `ok`.
 */
export interface UnverifiedDecision extends ErrorResponse {
  readonly unverified: WouldBeRefusal
}

/**
 * A CORS preflight let through unauthenticated by `preflight: 'pass'`: no principal, nothing
 * counted, no header to set, and no `onDecision` call. Adapters hand the request to the next
 * layer (the CORS layer that answers it) without setting `req.saiku`.
 */
export interface PassedDecision {
  readonly ok: true
  readonly passed: 'preflight'
  readonly principal: null
  readonly headers: HeaderMap
}

export type AuthDecision = AdmittedDecision | PassedDecision | UnverifiedDecision | ErrorResponse

/** A decision, returned at once when nothing had to be awaited: the common request costs no promise hop. */
export type Outcome = AuthDecision | Promise<AuthDecision>

export type DecisionReason =
  | 'admitted'
  | 'admitted_without_limits'
  | 'admitted_free'
  | 'missing_credentials'
  | 'ambiguous_credentials'
  | 'malformed_credentials'
  | VerificationFailure
  /** 403: a verified key (or a token exchanged from it) presented from an address its `allowedAddresses` leave out. */
  | 'address_not_allowed'
  | 'unknown_tenant'
  | 'no_subscription'
  | 'rate_limited'
  | 'cost_exceeds_limit'
  | 'invalid_cost'
  | 'key_store_unavailable'
  | 'limiter_unavailable'
  | 'misconfigured_tenant'
  | 'internal_error'
  | 'too_many_failures'
  /** 503: the client address had its most store lookups in flight and queued (`failedAuth.maxLookupsInFlight`). */
  | 'lookups_in_flight'
  | 'already_admitted'

/** Handed to `onDecision`: what happened, and to whom, never a secret. */
export interface DecisionEvent {
  readonly status: number
  readonly code: WireCode | null
  readonly reason: DecisionReason
  readonly method: string
  /** Without query or fragment; anything shaped like a key or token reads `[redacted]` (see `reportedPath`). */
  readonly path: string
  readonly ip: string | undefined
  readonly keyId: string | null
  readonly tenantId: string | null
  /**
   * False when report-only mode admitted a request it would have refused: `status`,
   * `code` and `reason` are the refusal it would have had (`reportOnly`).
   */
  readonly enforced: boolean
}
