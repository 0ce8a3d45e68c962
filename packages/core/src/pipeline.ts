import cluster from 'node:cluster'
import { extractBearer } from './bearer.js'
import { LoadingCache } from './cache.js'
import { announceKeyStoreChange, onKeyStoreChange } from './changes.js'
import { asStoreError, ERROR_STATUS, SaikuConfigError, SaikuStoreError, type WireCode } from './errors.js'
import {
  addRateLimitHeaders,
  bindingWindow,
  bearerChallenge,
  errorResponse,
  rateLimitPolicy,
  retryAfterSeconds,
  type ErrorResponse,
  type HeaderMap,
} from './http.js'
import { createRateLimiterBackend, type LimitDecision, type LimiterBackend } from './limiter.js'
import { createMemoryLimiter, type MemoryLimiterBackend } from './memory-limiter.js'
import { FailureBudget } from './failure-budget.js'
import { startLookup, type Lookup } from './lookups.js'
import { clientKey } from './client-address.js'
import { reportedPath } from './reported-path.js'
import { createCompositeVerifier } from './jwt.js'
import { createKeyManager, type KeyManager } from './management.js'
import { createCoreMetrics } from './metrics.js'
import { resolveOptions, type ResolvedOptions, type SaikuOptions } from './options.js'
import type { KeyStore, Subscription, TenantRecord } from './store.js'
import { limitsForTenant, type WindowLimits } from './tiers.js'
import { withTimeout } from './timeout.js'
import { createApiKeyVerifier, sourceKeyStateFromStore, type KeyVerifier, type VerificationFailure, type VerifiedCredential, type VerifyResult } from './verifier.js'

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
}

function requestIp(request: AuthRequest): string | undefined {
  return typeof request.ip === 'function' ? request.ip() : request.ip
}

/** The path of a request URL, without the query string. */
export function requestPath(request: AuthRequest): string {
  const query = request.url.indexOf('?')
  return query === -1 ? request.url : request.url.slice(0, query)
}

const ABSOLUTE_FORM = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i

/**
 * The path as the app routes it where the middleware is mounted: the mounted URL
 * without its query, an absolute-form target (`http://host/path`) reduced to its
 * path, and the mount prefix removed. Case is kept; exemptions compare without it.
 */
export function routePath(request: AuthRequest): string {
  let url = request.mountedUrl ?? request.url
  const authority = ABSOLUTE_FORM.exec(url)
  if (authority !== null) url = url.slice(authority[0].length)
  const end = url.search(/[?#]/)
  let path = end === -1 ? url : url.slice(0, end)
  if (!path.startsWith('/')) path = `/${path}`
  const prefix = request.mountPrefix
  if (prefix !== undefined && prefix !== '' && prefix !== '/') {
    const length = mountPrefixLength(path, prefix)
    if (length !== -1) path = path.slice(length) || '/'
    if (!path.startsWith('/')) path = `/${path}`
  }
  return path
}

/** How much of `path` the prefix covers, whole segments only, case-insensitively; -1 when it does not. */
function mountPrefixLength(path: string, prefix: string): number {
  const wanted = prefix.split('/').filter((segment) => segment !== '')
  const segments = path.split('/')
  // segments[0] is the empty string before the leading slash.
  if (segments.length - 1 < wanted.length) return -1
  let length = 0
  for (let i = 0; i < wanted.length; i++) {
    const segment = segments[i + 1]!
    const want = wanted[i]!
    if (segment === '' || (!want.startsWith(':') && segment.toLowerCase() !== want.toLowerCase())) return -1
    length += 1 + segment.length
  }
  return length
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
   * null when the backend cannot read them or the read failed.
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

export type AuthDecision = AdmittedDecision | UnverifiedDecision | ErrorResponse

export type DecisionReason =
  | 'admitted'
  | 'admitted_without_limits'
  | 'admitted_free'
  | 'missing_credentials'
  | 'ambiguous_credentials'
  | 'malformed_credentials'
  | VerificationFailure
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

export interface Authenticator {
  authenticate(request: AuthRequest): Promise<AuthDecision>
  /**
   * The same decision, returned at once when nothing had to be awaited (key and
   * tenant cached, in-process limiter), else as a promise. Never throws or rejects.
   * Adapters use it to spare the common request a promise hop.
   */
  check(request: AuthRequest): AuthDecision | Promise<AuthDecision>
  /** Key management that shares this authenticator's store and pepper. */
  readonly keys: KeyManager
  readonly options: ResolvedOptions
  /**
   * Announces that a key changed (after writing to the store yourself): every authenticator of
   * this store in this process forgets it, and a change feed carries it to other processes.
   * Revocations through `keys` and the bundled stores do this already.
   */
  invalidateKey(keyId: string): void
  /** Announces that a tenant changed, so a tier or subscription change applies on the next request, here and through a change feed. */
  invalidateTenant(tenantId: string): void
  /**
   * The tenant's limits and what is used of each window now, read from the
   * limiter without spending anything. Null for an unknown tenant; the windows
   * are null when the limiter backend cannot peek. Store and limiter failures
   * reject with a `SaikuStoreError`.
   */
  usage(tenantId: string): Promise<TenantUsage | null>
  /** Stops listening for store changes. */
  close(): void
  /** How much this process holds: every number is bounded by an option. */
  stats(): AuthenticatorStats
}

/** One window of `authenticator.usage()`. */
export interface WindowUsage {
  readonly window: 'minute' | 'hour'
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
    used: state.limit - state.remaining,
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

export interface AuthenticatorStats {
  /** Keys (and unknown key IDs) cached: at most `cache.maxEntries`. */
  readonly cachedKeys: number
  /** Tenants cached: at most `cache.maxEntries`. */
  readonly cachedTenants: number
  /** Tenants counted by the in-process limiter: at most `limiter.maxTenants`. */
  readonly countedTenants: number | null
  /** Client addresses with failures counted: at most `failedAuth.maxClients`. */
  readonly countedClients: number | null
}

interface CachedTenant {
  readonly view: TenantView
  readonly subscription: Subscription
  readonly trialEndsAtMs: number
  readonly limits: WindowLimits | null
  readonly limitsError: SaikuConfigError | null
  readonly policy: string
  /** `reportOnly.limits` chose this tenant, by tier or ID. */
  readonly reportOnlyLimits: boolean
}

function toCachedTenant(tenant: TenantRecord, options: ResolvedOptions): CachedTenant {
  let limits: WindowLimits | null = null
  let limitsError: SaikuConfigError | null = null
  try {
    limits = limitsForTenant(options.tiers, tenant)
  } catch (error) {
    if (!(error instanceof SaikuConfigError)) throw error
    limitsError = error
  }
  const trialEndsAt = tenant.subscription.trialEndsAt
  return {
    view: Object.freeze({
      tenantId: tenant.tenantId,
      tenantSlug: tenant.tenantSlug,
      tier: tenant.tier,
      connectionName: tenant.connectionName,
    }),
    subscription: Object.freeze({ status: tenant.subscription.status, trialEndsAt: trialEndsAt ?? null }),
    trialEndsAtMs: trialEndsAt == null ? Infinity : new Date(trialEndsAt).getTime(),
    limits,
    limitsError,
    policy: limits === null ? '' : rateLimitPolicy(limits),
    reportOnlyLimits: options.reportOnly.limits(tenant.tier, tenant.tenantId),
  }
}

function hasActiveSubscription(tenant: CachedTenant, nowMs: number): boolean {
  const { status } = tenant.subscription
  return status === 'active' || (status === 'trialing' && tenant.trialEndsAtMs > nowMs)
}

/**
 * Counting in this process's memory while being one of several workers lets each
 * worker admit the whole limit. Said once per process, at start-up.
 */
let warnedAboutCluster = false
function warnIfMemoryLimiterInCluster(limiter: LimiterBackend): void {
  const clustered = cluster.isWorker || process.env.NODE_APP_INSTANCE !== undefined
  if (warnedAboutCluster || limiter.inProcess !== true || !clustered) return
  warnedAboutCluster = true
  process.emitWarning(
    'Saiku auth keeps rate-limit counts in this process, but this process is one of several workers: each admits the full limit. Use a shared backend (e.g. @saiku/redis).',
    { code: 'SAIKU_MEMORY_LIMITER_IN_CLUSTER' },
  )
}

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
// The limiters that factories build: the same factory and prefix count in the same place.
const factoryIdentities = new WeakMap<object, Map<string, object>>()
function factoryIdentity(factory: object, keyPrefix: string): object {
  let byPrefix = factoryIdentities.get(factory)
  if (byPrefix === undefined) factoryIdentities.set(factory, (byPrefix = new Map()))
  let identity = byPrefix.get(keyPrefix)
  if (identity === undefined) byPrefix.set(keyPrefix, (identity = {}))
  return identity
}

const SIGNED_TOKEN_MESSAGE = 'Access token invalid, expired or revoked.'
const INVALID_REQUEST_MESSAGE = 'Send exactly one API key, in one Authorization header: "Authorization: Bearer <key>".'

/**
 * Builds the whole pipeline: bearer → verify (401) → tenant → subscription (402)
 * → per-tenant limits (429) → principal. Options are checked here and a
 * misconfiguration throws now; each request outcome is returned as data.
 */
export function createAuthenticator(store: KeyStore, input: SaikuOptions = {}): Authenticator {
  if (typeof store?.findKey !== 'function' || typeof store.findTenant !== 'function') {
    throw new SaikuConfigError('store', 'a KeyStore with findKey and findTenant', store)
  }
  const options = resolveOptions(input)
  // Read Date.now on every call (not a saved reference), so a faked Date moves everything together.
  const now = (): number => Date.now()
  const { realm, rateLimitHeaders: headerMode, onDecision, onError, cost: costOf } = options
  // Null without a MeterProvider: then no call below is timed or counted.
  const metrics = options.metrics === null ? null : createCoreMetrics(options.metrics)

  const reportError = (error: Error): void => {
    try {
      onError?.(error)
    } catch {
      // A failing hook must not turn a decision into a crash.
    }
  }

  const apiKeyVerifier =
    options.verifier === undefined
      ? createApiKeyVerifier(store, {
          cacheTtlMs: options.cache.ttlMs,
          negativeCacheTtlMs: options.cache.negativeTtlMs,
          cacheMaxEntries: options.cache.maxEntries,
          storeTimeoutMs: options.keyStoreTimeoutMs,
          serveStaleOnStoreError: options.failurePolicy.keyStore === 'serve-stale',
          maxStaleMs: options.cache.maxStaleMs,
          environments: options.environments,
          pepper: options.pepper,
          lastUsedResolutionMs: options.lastUsedResolutionMs,
          now,
          onStoreError: reportError,
          metrics,
        })
      : undefined
  const keyVerifier: KeyVerifier = options.verifier ?? apiKeyVerifier!
  const verifier: KeyVerifier =
    options.jwtVerifier === undefined
      ? keyVerifier
      : createCompositeVerifier({
          apiKeys: keyVerifier,
          others: options.jwtVerifier,
          environments: options.environments,
          sourceKeys: apiKeyVerifier?.keyState ?? sourceKeyStateFromStore(store, options.keyStoreTimeoutMs),
        })
  const uninstrumentedLimiter: LimiterBackend =
    options.limiter.backend ??
    (options.limiter.factory === undefined
      ? createMemoryLimiter({ maxTenants: options.limiter.maxTenants, now, windows: options.windows })
      : createRateLimiterBackend({ factory: options.limiter.factory, keyPrefix: options.limiter.keyPrefix }))
  const limiterIdentity: object =
    options.limiter.backend ?? (options.limiter.factory === undefined ? uninstrumentedLimiter : factoryIdentity(options.limiter.factory, options.limiter.keyPrefix))
  const limiter: LimiterBackend = metrics === null ? uninstrumentedLimiter : metrics.instrumentLimiter(uninstrumentedLimiter)
  const limiterTimeoutMs = limiter.inProcess === true ? 0 : options.limiter.timeoutMs
  warnIfMemoryLimiterInCluster(limiter)
  const customVerifier = options.verifier !== undefined || options.jwtVerifier !== undefined
  const tenants = new LoadingCache<CachedTenant | null>(options.cache.maxEntries, now)
  const tenantTtl = (): number => options.cache.ttlMs

  // Marks the principals this authenticator made: counted, or admitted without counting (failing open).
  const countedMark: AdmittedMark = Object.freeze({ countedBy: limiterIdentity })
  const uncountedMark: AdmittedMark = Object.freeze({ countedBy: null })
  const failureBudget =
    options.failedAuth === null
      ? null
      : new FailureBudget({
          perMinute: options.failedAuth.perMinute,
          perHour: options.failedAuth.perMinute * 10,
          maxClients: options.failedAuth.maxClients,
          trustVerifiedMs: options.failedAuth.trustVerifiedMs,
          maxTrustedKeys: Math.max(1, options.cache.maxEntries),
          now,
        })

  const stopListening = onKeyStoreChange(store, (change) => {
    if (change.kind === 'key') verifier.invalidateKey?.(change.keyId)
    else if (change.kind === 'tenant') tenants.delete(change.tenantId)
    else {
      apiKeyVerifier?.clear()
      tenants.clear()
    }
  })

  // Prebuilt: the common refusals cost no serialization.
  const missingChallenge = { 'www-authenticate': bearerChallenge(realm) }
  const invalidTokenChallenge = { 'www-authenticate': bearerChallenge(realm, 'invalid_token') }
  // The same challenge for a signed token, whose body names the token rather than an API key.
  const invalidSignedTokenChallenge = { ...invalidTokenChallenge }
  const invalidRequestChallenge = { 'www-authenticate': bearerChallenge(realm, 'invalid_request') }

  function emit(request: AuthRequest, status: number, code: WireCode | null, reason: DecisionReason, keyId: string | null, tenantId: string | null, enforced = true): void {
    // The tier of a tenant the request got as far as: its record is in the cache by now.
    if (metrics !== null) metrics.decision(status, reason, tenantId === null ? null : (tenants.peek(tenantId)?.view.tier ?? null), enforced, tenantId)
    if (onDecision === undefined) return
    try {
      onDecision({ status, code, reason, method: request.method, path: reportedPath(request.url), ip: requestIp(request), keyId, tenantId, enforced })
    } catch {
      // Observers never change an outcome.
    }
  }

  // The two refusals that floods are made of, built once: adapters only read them.
  const prebuilt = new Map<HeaderMap, ErrorResponse>([
    [missingChallenge, Object.freeze(errorResponse('unauthorized', undefined, missingChallenge))],
    [invalidTokenChallenge, Object.freeze(errorResponse('unauthorized', undefined, invalidTokenChallenge))],
    [invalidSignedTokenChallenge, Object.freeze(errorResponse('unauthorized', SIGNED_TOKEN_MESSAGE, invalidSignedTokenChallenge))],
  ])

  function prebuiltOrNew(code: WireCode, message?: string, headers?: HeaderMap): ErrorResponse {
    return (code === 'unauthorized' && message === undefined && headers !== undefined && prebuilt.get(headers)) || errorResponse(code, message, headers)
  }

  function refuse(request: AuthRequest, code: WireCode, reason: DecisionReason, ids: { readonly keyId?: string; readonly tenantId?: string }, message?: string, headers?: HeaderMap): ErrorResponse {
    const response = prebuiltOrNew(code, message, headers)
    emit(request, response.status, code, reason, ids.keyId ?? null, ids.tenantId ?? null)
    return response
  }

  async function loadTenantRecord(tenantId: string): Promise<CachedTenant | null> {
    const started = metrics === null ? 0 : performance.now()
    let record: TenantRecord | null
    try {
      record = await withTimeout(store.findTenant(tenantId), options.keyStoreTimeoutMs, 'key_store', 'key store findTenant')
    } catch (error) {
      metrics?.keyStoreCall('findTenant', started, false)
      throw error
    }
    metrics?.keyStoreCall('findTenant', started, true)
    return record === null ? null : toCachedTenant(record, options)
  }
  const reportTenantRefreshError = (error: unknown): void => reportError(asStoreError(error, 'key_store', 'key store findTenant failed'))

  function loadTenant(tenantId: string): Promise<CachedTenant | null> {
    return tenants.load(tenantId, () => loadTenantRecord(tenantId), tenantTtl)
  }

  async function loadTenantOrStale(tenantId: string): Promise<CachedTenant | null> {
    try {
      return await loadTenant(tenantId)
    } catch (error) {
      const stale = options.failurePolicy.keyStore === 'serve-stale' ? tenants.getStale(tenantId, options.cache.maxStaleMs) : undefined
      if (stale === undefined) throw error
      reportError(asStoreError(error, 'key_store', 'key store findTenant failed'))
      return stale
    }
  }

  const reportOnlyAuthentication = options.reportOnly.authentication

  /**
   * A refusal of the credentials (400, 401, the failed-authentication 429): with
   * report-only authentication, reported as such and the request admitted without a principal.
   */
  function refuseCredentials(request: AuthRequest, code: WireCode, reason: DecisionReason, ids: { readonly keyId?: string; readonly tenantId?: string }, message?: string, headers?: HeaderMap): AuthDecision {
    metrics?.failedAuthentication(reason, !reportOnlyAuthentication)
    if (!reportOnlyAuthentication) return refuse(request, code, reason, ids, message, headers)
    const response = prebuiltOrNew(code, message, headers)
    emit(request, response.status, code, reason, ids.keyId ?? null, ids.tenantId ?? null, false)
    const unverified: UnverifiedDecision = { ...response, unverified: { status: response.status, code, reason } }
    return unverified
  }

  function keyStoreFailed(request: AuthRequest, error: unknown): ErrorResponse {
    reportError(asStoreError(error, 'key_store', 'key store failed'))
    return refuse(request, 'service_unavailable', 'key_store_unavailable', {})
  }

  function unexpected(request: AuthRequest, error: unknown, reason: DecisionReason = 'internal_error', ids: { readonly keyId?: string; readonly tenantId?: string } = {}): ErrorResponse {
    // Only user code can get here (a predicate or cost function that throws or returns
    // nonsense): still a JSON answer, never a rejection.
    reportError(error instanceof Error ? error : new Error(String(error)))
    return refuse(request, 'internal_error', reason, ids)
  }

  // The stages below return at once when nothing has to be awaited (key and
  // tenant cached, in-process limiter): the common request costs no promise hops.
  type Outcome = AuthDecision | Promise<AuthDecision>

  function check(request: AuthRequest): Outcome {
    try {
      const outcome = decide(request)
      return outcome instanceof Promise ? outcome.catch((error: unknown) => unexpected(request, error)) : outcome
    } catch (error) {
      return unexpected(request, error)
    }
  }

  function authenticate(request: AuthRequest): Promise<AuthDecision> {
    const outcome = check(request)
    return outcome instanceof Promise ? outcome : Promise.resolve(outcome)
  }

  function clientOf(request: AuthRequest): string {
    return clientKey(requestIp(request), options.failedAuth!.ipv6PrefixBits)
  }

  function tooManyFailures(request: AuthRequest, waitMs: number): AuthDecision {
    const retryAfter = Math.max(1, Math.ceil(waitMs / 1000))
    const message = `Too many failed authentication attempts from this address. Retry in ${retryAfter} s.`
    return refuseCredentials(request, 'rate_limited', 'too_many_failures', {}, message, { 'retry-after': String(retryAfter) })
  }

  /** A 401, counted against the client; past its budget the answer is 429 instead. */
  function failed(request: AuthRequest, reason: DecisionReason, ids: { readonly keyId?: string; readonly tenantId?: string } = {}, signed = false): AuthDecision {
    if (failureBudget !== null) {
      const waitMs = failureBudget.fail(clientOf(request))
      if (waitMs > 0) return tooManyFailures(request, waitMs)
    }
    return refuseCredentials(request, 'unauthorized', reason, ids, undefined, signed ? invalidSignedTokenChallenge : invalidTokenChallenge)
  }

  function decide(request: AuthRequest): Outcome {
    const already = request.principal as { [admittedMark]?: AdmittedMark } | undefined
    const mark = already?.[admittedMark]
    if (mark === countedMark || mark === uncountedMark) {
      emit(request, 200, null, 'already_admitted', null, null)
      return { ok: true, principal: already as unknown as SaikuPrincipal, headers: {} }
    }
    const credentials = extractBearer(request)
    if (credentials.kind !== 'token') {
      if (credentials.kind === 'missing') return refuseCredentials(request, 'unauthorized', 'missing_credentials', {}, undefined, missingChallenge)
      if (credentials.kind === 'ambiguous') {
        return refuseCredentials(request, 'invalid_request', 'ambiguous_credentials', {}, INVALID_REQUEST_MESSAGE, invalidRequestChallenge)
      }
      return failed(request, 'malformed_credentials')
    }
    let verified: VerifyResult | Promise<VerifyResult>
    let lookup: Lookup | null = null
    try {
      // The common request is answered from the cache; only what needs the store looks at the client's failures.
      const known = verifier.verifyWithoutIo?.(credentials.token)
      if (known !== undefined) return verifiedStage(request, known, null)
      // Signed tokens need no store and count only when they fail; an API key lookup goes through the budget.
      if (failureBudget !== null && credentials.token.startsWith('sk_')) {
        const started = startLookup(failureBudget, clientOf(request), credentials.token, options.verifier !== undefined)
        if (typeof started === 'number') return tooManyFailures(request, started)
        lookup = started
      }
      verified = verifier.verify(credentials.token)
    } catch (error) {
      lookup?.storeFailed()
      return keyStoreFailed(request, error)
    }
    if (verified instanceof Promise) return afterVerifying(request, verified, lookup, !credentials.token.startsWith('sk_'))
    lookup?.done()
    return verifiedStage(request, verified, lookup, !credentials.token.startsWith('sk_'))
  }

  async function afterVerifying(request: AuthRequest, pending: Promise<VerifyResult>, lookup: Lookup | null, signed: boolean): Promise<AuthDecision> {
    let verified: VerifyResult
    try {
      verified = await (customVerifier ? withTimeout(pending, options.keyStoreTimeoutMs, 'key_store', 'verifier') : pending)
    } catch (error) {
      lookup?.storeFailed()
      return keyStoreFailed(request, error)
    }
    lookup?.done()
    return verifiedStage(request, verified, lookup, signed)
  }

  /** `lookup`: the store lookup went through the failure budget; it settles what it spent in advance. */
  function verifiedStage(request: AuthRequest, verified: VerifyResult, lookup: Lookup | null, signed = false): Outcome {
    if (!verified.ok) return lookup?.spent === true ? refuseCredentials(request, 'unauthorized', verified.reason, {}, undefined, invalidTokenChallenge) : failed(request, verified.reason, {}, signed)
    if (lookup !== null) lookup.verified()
    const { credential } = verified
    const nowMs = now()
    if (failureBudget !== null && credential.type === 'api_key') failureBudget.verified(credential.keyId, nowMs)
    const tenant = tenants.getFresh(credential.tenantId, nowMs)
    metrics?.cache('tenant', tenant !== undefined)
    if (tenant === undefined) return afterLoadingTenant(request, credential)
    tenants.refreshIfDue(credential.tenantId, nowMs, loadTenantRecord, tenantTtl, reportTenantRefreshError)
    return tenantStage(request, credential, tenant, nowMs)
  }

  async function afterLoadingTenant(request: AuthRequest, credential: VerifiedCredential): Promise<AuthDecision> {
    let tenant: CachedTenant | null
    try {
      tenant = await loadTenantOrStale(credential.tenantId)
    } catch (error) {
      return keyStoreFailed(request, error)
    }
    return tenantStage(request, credential, tenant, now())
  }

  function tenantStage(request: AuthRequest, credential: VerifiedCredential, tenant: CachedTenant | null, nowMs: number): Outcome {
    if (tenant === null) return failed(request, 'unknown_tenant', credential)
    if (options.subscription.required && !hasActiveSubscription(tenant, nowMs) && !options.subscription.isExempt(routePath(request), request)) {
      return refuse(request, 'payment_required', 'no_subscription', credential)
    }
    const limits = tenant.limits
    if (limits === null) {
      reportError(tenant.limitsError!)
      return refuse(request, 'internal_error', 'misconfigured_tenant', credential)
    }
    // Already counted by another authenticator on this limiter: its counts stand.
    const prior = request.principal as { [admittedMark]?: AdmittedMark; tenant?: TenantView; rateLimit?: LimitDecision | null } | undefined
    if (prior?.[admittedMark]?.countedBy === limiterIdentity && prior.tenant?.tenantId === credential.tenantId && prior.rateLimit != null) {
      return finish(request, credential, tenant, prior.rateLimit, 1)
    }
    let cost = 1
    if (costOf !== undefined) {
      let value: unknown
      try {
        value = costOf({ method: request.method, path: routePath(request), tenant: tenant.view, request })
      } catch (error) {
        return unexpected(request, error, 'invalid_cost', credential)
      }
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
        return unexpected(request, new SaikuConfigError('cost', 'a whole number of units, 0 or more', value), 'invalid_cost', credential)
      }
      cost = value
      if (cost === 0) return free(request, credential, tenant, limits)
      if (cost > limits.perMinute || cost > limits.perHour) return tooCostly(request, credential, limits, cost)
    }
    if (limiter.consumeSync !== undefined) {
      let rateLimit: LimitDecision
      try {
        rateLimit = limiter.consumeSync(credential.tenantId, limits, cost)
      } catch (error) {
        return limiterFailed(request, credential, tenant, limits, cost, error)
      }
      return finish(request, credential, tenant, rateLimit, cost)
    }
    return afterCounting(request, credential, tenant, limits, cost)
  }

  /** A cost no window can ever hold: a refusal that says so, with no Retry-After to wait out. */
  function tooCostly(request: AuthRequest, credential: VerifiedCredential, limits: WindowLimits, cost: number): ErrorResponse {
    const [limit, window] = cost > limits.perMinute ? [limits.perMinute, 'minute'] : [limits.perHour, 'hour']
    const message = `This request costs ${cost} units, more than the ${limit} per ${window} this plan allows: it can never be admitted.`
    return refuse(request, 'rate_limited', 'cost_exceeds_limit', credential, message)
  }

  /**
   * Cost 0: neither counted nor refused by the limits. The rate-limit fields tell
   * the counts as they stand, read without counting where the backend can; when
   * it cannot, or the read fails (reported to `onError`), they are left out.
   */
  function free(request: AuthRequest, credential: VerifiedCredential, tenant: CachedTenant, limits: WindowLimits): Outcome {
    const peekSync = (limiter as Partial<MemoryLimiterBackend>).peekSync
    if (peekSync !== undefined) {
      let seen: LimitDecision | null = null
      try {
        seen = peekSync(credential.tenantId, limits)
      } catch (error) {
        reportError(asStoreError(error, 'limiter', 'rate limiter peek failed'))
      }
      return admitFree(request, credential, tenant, seen)
    }
    if (limiter.peek === undefined) return admitFree(request, credential, tenant, null)
    return afterPeeking(request, credential, tenant, limits)
  }

  async function afterPeeking(request: AuthRequest, credential: VerifiedCredential, tenant: CachedTenant, limits: WindowLimits): Promise<AuthDecision> {
    let seen: LimitDecision | null = null
    try {
      const peeked = limiter.peek!(credential.tenantId, limits)
      seen = await (limiterTimeoutMs === 0 ? peeked : withTimeout(peeked, limiterTimeoutMs, 'limiter', 'rate limiter'))
    } catch (error) {
      reportError(error instanceof SaikuStoreError ? error : asStoreError(error, 'limiter', 'rate limiter peek failed'))
    }
    return admitFree(request, credential, tenant, seen)
  }

  function admitFree(request: AuthRequest, credential: VerifiedCredential, tenant: CachedTenant, seen: LimitDecision | null): AdmittedDecision {
    const headers: HeaderMap = {}
    // Admitted whatever the counts say: a spent window still admits what costs nothing.
    const rateLimit = seen === null ? null : { ...seen, admitted: true, retryAfterMs: 0 }
    if (rateLimit !== null) addRateLimitHeaders(headers, headerMode, tenant.policy, rateLimit)
    emit(request, 200, null, 'admitted_free', credential.keyId, credential.tenantId)
    const principal = { tenant: tenant.view, subscription: tenant.subscription, credential, limits: tenant.limits!, realm, rateLimit, [admittedMark]: uncountedMark }
    return { ok: true, principal, headers }
  }

  async function afterCounting(request: AuthRequest, credential: VerifiedCredential, tenant: CachedTenant, limits: WindowLimits, cost: number): Promise<AuthDecision> {
    let rateLimit: LimitDecision
    try {
      const consumed = limiter.consume(credential.tenantId, limits, cost)
      rateLimit = await (limiterTimeoutMs === 0 ? consumed : withTimeout(consumed, limiterTimeoutMs, 'limiter', 'rate limiter'))
    } catch (error) {
      return limiterFailed(request, credential, tenant, limits, cost, error)
    }
    return finish(request, credential, tenant, rateLimit, cost)
  }

  async function limiterFailed(request: AuthRequest, credential: VerifiedCredential, tenant: CachedTenant, limits: WindowLimits, cost: number, error: unknown): Promise<AuthDecision> {
    reportError(error instanceof SaikuStoreError ? error : asStoreError(error, 'limiter', 'rate limiter failed'))
    if (options.failurePolicy.limiter === 'closed') {
      return refuse(request, 'service_unavailable', 'limiter_unavailable', credential)
    }
    const insurance = options.limiter.insurance
    const rateLimit = insurance === undefined ? null : await insurance.consume(credential.tenantId, limits, cost).catch(() => null)
    return finish(request, credential, tenant, rateLimit, cost)
  }

  function finish(request: AuthRequest, credential: VerifiedCredential, tenant: CachedTenant, rateLimit: LimitDecision | null, cost: number): AuthDecision {
    const headers: HeaderMap = {}
    if (rateLimit !== null) {
      if (tenant.reportOnlyLimits) return finishReportOnly(request, credential, tenant, rateLimit)
      addRateLimitHeaders(headers, headerMode, tenant.policy, rateLimit, cost)
      if (!rateLimit.admitted) {
        const retryAfter = retryAfterSeconds(rateLimit)
        headers['retry-after'] = String(retryAfter)
        const binding = bindingWindow(rateLimit, cost)
        const costs = cost === 1 ? '' : ` This request costs ${cost}; ${binding.remaining} left.`
        const message = `Rate limit exceeded: ${binding.limit} requests per ${binding.window}.${costs} Retry in ${retryAfter} s.`
        return refuse(request, 'rate_limited', 'rate_limited', credential, message, headers)
      }
    }
    emit(request, 200, null, rateLimit === null ? 'admitted_without_limits' : 'admitted', credential.keyId, credential.tenantId)
    return admit(credential, tenant, rateLimit, headers)
  }

  function admit(credential: VerifiedCredential, tenant: CachedTenant, rateLimit: LimitDecision | null, headers: HeaderMap): AdmittedDecision {
    const mark = rateLimit === null ? uncountedMark : countedMark
    const principal = { tenant: tenant.view, subscription: tenant.subscription, credential, limits: tenant.limits!, realm, rateLimit, [admittedMark]: mark }
    return { ok: true, principal, headers }
  }

  /** Report-only limits: counted as usual (a would-be refusal counts nothing), reported, admitted; no Retry-After. */
  function finishReportOnly(request: AuthRequest, credential: VerifiedCredential, tenant: CachedTenant, rateLimit: LimitDecision): AuthDecision {
    const headers: HeaderMap = {}
    if (options.reportOnly.rateLimitHeaders) addRateLimitHeaders(headers, headerMode, tenant.policy, rateLimit)
    if (rateLimit.admitted) emit(request, 200, null, 'admitted', credential.keyId, credential.tenantId)
    else emit(request, ERROR_STATUS.rate_limited, 'rate_limited', 'rate_limited', credential.keyId, credential.tenantId, false)
    return admit(credential, tenant, rateLimit, headers)
  }

  async function usage(tenantId: string): Promise<TenantUsage | null> {
    let tenant: CachedTenant | null
    try {
      tenant = await loadTenant(tenantId)
    } catch (error) {
      throw asStoreError(error, 'key_store', 'key store findTenant failed')
    }
    if (tenant === null) return null
    if (tenant.limits === null) throw tenant.limitsError!
    if (limiter.peek === undefined) return { tenantId, limits: tenant.limits, minute: null, hour: null }
    let decision: LimitDecision
    try {
      const peeked = limiter.peek(tenantId, tenant.limits)
      decision = await (limiterTimeoutMs === 0 ? peeked : withTimeout(peeked, limiterTimeoutMs, 'limiter', 'rate limiter'))
    } catch (error) {
      throw error instanceof SaikuStoreError ? error : asStoreError(error, 'limiter', 'rate limiter peek failed')
    }
    return usageFromDecision(tenantId, tenant.limits, decision)
  }

  return {
    authenticate,
    check,
    usage,
    keys: createKeyManager(store, { pepper: options.pepper, now }),
    options,
    // Announced: every authenticator of this store in this process hears it, and a change feed carries it to the others.
    invalidateKey(keyId) {
      announceKeyStoreChange(store, { kind: 'key', keyId })
    },
    invalidateTenant(tenantId) {
      announceKeyStoreChange(store, { kind: 'tenant', tenantId })
    },
    close: stopListening,
    stats: () => ({
      cachedKeys: apiKeyVerifier?.cachedKeys ?? 0,
      cachedTenants: tenants.size,
      countedTenants: 'trackedTenants' in limiter ? (limiter as MemoryLimiterBackend).trackedTenants : null,
      countedClients: failureBudget?.trackedClients ?? null,
    }),
  }
}
