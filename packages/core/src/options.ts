import { SaikuConfigError } from './errors.js'
import { RATE_LIMIT_HEADER_MODES, type RateLimitHeaderMode } from './http.js'
import { KEY_ENVIRONMENTS, type KeyEnvironment } from './keys.js'
import type { LimiterBackend, RateLimiterFactory } from './limiter.js'
import { createMemoryLimiter, WINDOW_KINDS, type WindowKind } from './memory-limiter.js'
import { resolveTierTable, type TierLimits, type TierTable } from './tiers.js'
import type { KeyVerifier } from './verifier.js'
import { createJwtVerifier, type JwtVerifierOptions } from './jwt.js'
import type { AuthRequest, CostRequest, DecisionEvent } from './pipeline.js'
import type { MetricsSettings } from './metrics.js'
import type { MeterProvider } from '@opentelemetry/api'

export type KeyStoreFailurePolicy = 'closed' | 'serve-stale'
export type LimiterFailurePolicy = 'closed' | 'open'

export interface SaikuOptions {
  /** `realm` of the `WWW-Authenticate` challenge. Default `"saiku"`. */
  realm?: string
  /** Overrides of the tier table, merged over the spec's plans. */
  tiers?: Readonly<Record<string, TierLimits>>
  /** Default `"draft-11"`. */
  rateLimitHeaders?: RateLimitHeaderMode
  /**
   * `'fixed'` (default): each window starts at a tenant's first request, so up to twice
   * a limit can pass across a boundary. `'rolling'`: no span of a window's length ever
   * admits more than its limit. For the memory backend and `@saiku/redis`
   * (`createRedisLimiter({ windows: 'rolling' })`); not for `limiter.factory`.
   * Default: what `limiter.backend` counts, else `'fixed'`.
   */
  windows?: WindowKind
  limiter?: {
    /** Builds each window's rate-limiter-flexible limiter (Redis, Postgres, …). Default: memory. */
    factory?: RateLimiterFactory
    /** A backend of your own, instead of a factory. */
    backend?: LimiterBackend
    /** Prefix of the limiter's keys. Default `"saiku"`. */
    keyPrefix?: string
    /** The memory backend's bound on tenants counted at once (oldest hour forgotten first). Default 100000. */
    maxTenants?: number
    /** Deadline for the limiter's decision on one request (not applied to the in-process memory backend). Default 1000. */
    timeoutMs?: number
    /**
     * With `failurePolicy.limiter: 'open'`: while the backend fails, count in this
     * process instead of not at all (`true`: in memory, with each tenant's limits),
     * so N processes admit at most N times the limit. Default false.
     */
    insurance?: boolean | LimiterBackend
  }
  cache?: {
    /** How long a key or tenant record is trusted: the staleness bound for changes made in other processes. Default 10000; 0 disables. */
    ttlMs?: number
    /** How long an unknown key ID is remembered. Default: `ttlMs`. */
    negativeTtlMs?: number
    /** Bound on cached keys and on cached tenants. Default 10000. */
    maxEntries?: number
    /**
     * With `failurePolicy.keyStore: 'serve-stale'`: the longest an entry is served
     * past its expiry while the store fails. Beyond it the answer is 503. Default 60000.
     */
    maxStaleMs?: number
  }
  /** Deadline for each key store call (a request makes at most two: key, then tenant) and for a custom verifier. Default 1000. */
  keyStoreTimeoutMs?: number
  failurePolicy?: {
    /** `closed` (default): 503. `serve-stale`: answer from an expired cache entry when there is one, else 503. */
    keyStore?: KeyStoreFailurePolicy
    /** `closed` (default): 503. `open`: admit without counting. */
    limiter?: LimiterFailurePolicy
  }
  subscription?: {
    /** Whether tenants need an active subscription or trial (else 402). Default true. */
    required?: boolean
    /**
     * Paths (and everything below them) that need no subscription, e.g. `["/me/billing"]`:
     * matched against the path as the app routes it where the middleware is mounted
     * (below a router's mount point), in any case, from an absolute-form target too.
     */
    exemptPaths?: readonly string[]
    /** A predicate instead of, or beside, `exemptPaths`; it receives the same mount-relative path, case kept. */
    isExempt?: (path: string, request: AuthRequest) => boolean
  }
  /**
   * A stricter budget for failed authentication, per client address: beyond it
   * the client gets 429 for anything this process cannot verify from its cache,
   * without a store lookup. No tenant's quota is touched. `false` turns it off.
   */
  failedAuth?:
    | false
    | {
        /** Failures per minute per client (ten times that per hour). Default 30. */
        perMinute?: number
        /** IPv6 clients are counted by this prefix. Default 64. */
        ipv6PrefixBits?: number
        /** Most clients counted at once. Default 100000. */
        maxClients?: number
        /**
         * A key ID this process verified within this time reaches its cache entry or
         * the store whatever its address has spent, so neighbours' garbage cannot lock
         * out a key in use. Garbage gains nothing by it: such lookups are single-flight
         * and cached, at most one per key ID per `cache.ttlMs`. 0 turns it off. Default 3600000.
         */
        trustVerifiedMs?: number
      }
  /** Which key environments this server accepts. Default both. */
  environments?: readonly KeyEnvironment[]
  /** Secret for HMAC-SHA-256 digests instead of plain SHA-256. Every process must use the same one. */
  pepper?: string | Buffer
  /** Minimum time between two `lastUsedAt` writes for one key, per process. Default 60000. */
  lastUsedResolutionMs?: number
  /** Replaces the API-key verifier (e.g. to accept other credentials). */
  verifier?: KeyVerifier
  /**
   * Also accept signed bearer tokens (JWT): tokens that do not look like API keys
   * go to this verifier (options for `createJwtVerifier`, or one of your own).
   */
  jwt?: JwtVerifierOptions | KeyVerifier
  /**
   * Units a request takes from both of its tenant's windows, asked once the key
   * and tenant are known: a whole number, default 1 for every request. 0: neither
   * counted nor refused by the limits (health checks, usage reads). A cost above a
   * window's limit is refused with a 429 that says it can never be admitted. Any
   * other value (negative, fractional, NaN, not a number) or a throw is a 500 and
   * an `onError` call.
   */
  cost?: (request: CostRequest) => number
  /**
   * Report-only roll-out: decide and count as usual, tell `onDecision` what would
   * have happened (`enforced: false`), and admit the request anyway.
   */
  reportOnly?: {
    /**
     * Limits: `true` for every tenant, or the tiers and tenant IDs chosen. An
     * over-limit request is admitted with `principal.rateLimit.admitted === false`.
     * Default false.
     */
    limits?: boolean | { readonly tiers?: readonly string[]; readonly tenants?: readonly string[] }
    /**
     * Authentication, for every request (a key that fails names no tenant): a request
     * whose credentials would get 401 (or 400, or the failed-authentication 429) goes
     * on without a principal, marked as unverified (`req.saikuUnverified`). Default false.
     */
    authentication?: boolean
    /** Whether requests under report-only limits carry the RateLimit fields. Default true. */
    rateLimitHeaders?: boolean
  }
  /**
   * OpenTelemetry metrics (see the README for each instrument). Recorded through the
   * global MeterProvider registered before the middleware is built, or this one; with
   * neither, nothing is recorded and nothing is paid. `false` turns them off.
   */
  metrics?:
    | false
    | {
        meterProvider?: MeterProvider
        /** Adds `saiku.tenant.id` to `saiku.decisions`: a series per tenant. Default false. */
        tenantIds?: boolean
      }
  /** Called with every decision, for logs and metrics. Never receives a secret. */
  onDecision?: (event: DecisionEvent) => void
  /** Called with every store failure and misconfigured tenant, whatever the policy did with it. */
  onError?: (error: Error) => void
}

export interface ResolvedOptions {
  readonly realm: string
  readonly tiers: TierTable
  readonly rateLimitHeaders: RateLimitHeaderMode
  readonly windows: WindowKind
  readonly limiter: {
    readonly factory: RateLimiterFactory | undefined
    readonly backend: LimiterBackend | undefined
    readonly keyPrefix: string
    readonly maxTenants: number
    readonly timeoutMs: number
    readonly insurance: LimiterBackend | undefined
  }
  readonly cache: { readonly ttlMs: number; readonly negativeTtlMs: number; readonly maxEntries: number; readonly maxStaleMs: number }
  readonly keyStoreTimeoutMs: number
  readonly failurePolicy: { readonly keyStore: KeyStoreFailurePolicy; readonly limiter: LimiterFailurePolicy }
  readonly subscription: { readonly required: boolean; readonly isExempt: (path: string, request: AuthRequest) => boolean }
  readonly failedAuth: { readonly perMinute: number; readonly ipv6PrefixBits: number; readonly maxClients: number; readonly trustVerifiedMs: number } | null
  readonly environments: readonly KeyEnvironment[]
  readonly pepper: string | Buffer | undefined
  readonly lastUsedResolutionMs: number
  readonly verifier: KeyVerifier | undefined
  readonly jwtVerifier: KeyVerifier | undefined
  readonly cost: ((request: CostRequest) => number) | undefined
  readonly reportOnly: {
    /** Whether a tenant's limits are report-only, by tier and tenant ID. */
    readonly limits: (tier: string, tenantId: string) => boolean
    readonly authentication: boolean
    readonly rateLimitHeaders: boolean
  }
  readonly metrics: MetricsSettings | null
  readonly onDecision: ((event: DecisionEvent) => void) | undefined
  readonly onError: ((error: Error) => void) | undefined
}

const KNOWN_OPTIONS: Readonly<Record<string, readonly string[] | null>> = {
  realm: null,
  tiers: null,
  rateLimitHeaders: null,
  windows: null,
  limiter: ['factory', 'backend', 'keyPrefix', 'maxTenants', 'timeoutMs', 'insurance'],
  cache: ['ttlMs', 'negativeTtlMs', 'maxEntries', 'maxStaleMs'],
  keyStoreTimeoutMs: null,
  failurePolicy: ['keyStore', 'limiter'],
  subscription: ['required', 'exemptPaths', 'isExempt'],
  failedAuth: ['perMinute', 'ipv6PrefixBits', 'maxClients', 'trustVerifiedMs'],
  environments: null,
  pepper: null,
  lastUsedResolutionMs: null,
  verifier: null,
  jwt: null,
  cost: null,
  reportOnly: ['limits', 'authentication', 'rateLimitHeaders'],
  metrics: ['meterProvider', 'tenantIds'],
  onDecision: null,
  onError: null,
}

function checkKnown(path: string, value: object, known: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      throw new SaikuConfigError(`${path}${path === '' ? '' : '.'}${key}`, `a known option (${known.join(', ')})`, key)
    }
  }
}

function group(options: Record<string, unknown>, name: string): Record<string, unknown> {
  const value = options[name]
  if (value === undefined) return {}
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SaikuConfigError(name, 'an object', value)
  }
  checkKnown(name, value, KNOWN_OPTIONS[name]!)
  return value as Record<string, unknown>
}

function durationMs(path: string, value: unknown, fallback: number, min = 0): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > 2_147_483_647) {
    throw new SaikuConfigError(path, `an integer number of milliseconds from ${min} to 2147483647`, value)
  }
  return value
}

function positiveInteger(path: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) throw new SaikuConfigError(path, 'a positive integer', value)
  return value
}

function oneOf<T extends string>(path: string, value: unknown, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback
  if (!allowed.includes(value as T)) throw new SaikuConfigError(path, `one of ${allowed.map((a) => `"${a}"`).join(', ')}`, value)
  return value as T
}

function optionalFunction<F>(path: string, value: unknown): F | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'function') throw new SaikuConfigError(path, 'a function', value)
  return value as F
}

function exemptPathsPredicate(value: unknown): ((path: string) => boolean) | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value)) throw new SaikuConfigError('subscription.exemptPaths', 'an array of paths', value)
  const prefixes = value.map((entry: unknown, index) => {
    if (typeof entry !== 'string' || !entry.startsWith('/')) {
      throw new SaikuConfigError(`subscription.exemptPaths[${index}]`, 'a path starting with "/"', entry)
    }
    return (entry.length > 1 && entry.endsWith('/') ? entry.slice(0, -1) : entry).toLowerCase()
  })
  // Whole segments only: "/me/billing" exempts "/me/billing/trial", not "/me/billingx"; and
  // without regard to case, as Express and @koa/router route by default.
  return (routed) => {
    const path = routed.toLowerCase()
    return prefixes.some((prefix) => prefix === '/' || path === prefix || path.startsWith(`${prefix}/`))
  }
}

const NEVER = (): boolean => false
const ALWAYS = (): boolean => true

function stringList(path: string, value: unknown, allowed?: readonly string[]): ReadonlySet<string> {
  if (value === undefined) return new Set()
  if (!Array.isArray(value)) throw new SaikuConfigError(path, 'an array of strings', value)
  for (const [index, entry] of value.entries()) {
    if (typeof entry !== 'string' || entry === '') throw new SaikuConfigError(`${path}[${index}]`, 'a non-empty string', entry)
    if (allowed !== undefined && !allowed.includes(entry)) throw new SaikuConfigError(`${path}[${index}]`, `a tier of the tier table (${allowed.join(', ')})`, entry)
  }
  return new Set(value as string[])
}

function reportOnlyOption(options: Record<string, unknown>, tiers: TierTable): ResolvedOptions['reportOnly'] {
  const group_ = group(options, 'reportOnly')
  const limits = group_.limits ?? false
  let limitsFor: (tier: string, tenantId: string) => boolean
  if (typeof limits === 'boolean') limitsFor = limits ? ALWAYS : NEVER
  else if (typeof limits === 'object' && limits !== null && !Array.isArray(limits)) {
    checkKnown('reportOnly.limits', limits, ['tiers', 'tenants'])
    const chosen = limits as Record<string, unknown>
    const byTier = stringList('reportOnly.limits.tiers', chosen.tiers, Object.keys(tiers))
    const byTenant = stringList('reportOnly.limits.tenants', chosen.tenants)
    if (byTier.size === 0 && byTenant.size === 0) throw new SaikuConfigError('reportOnly.limits', 'true, false, or at least one tier or tenant', limits)
    limitsFor = (tier, tenantId) => byTier.has(tier) || byTenant.has(tenantId)
  } else throw new SaikuConfigError('reportOnly.limits', 'a boolean or { tiers, tenants }', limits)
  const authentication = group_.authentication ?? false
  if (typeof authentication !== 'boolean') throw new SaikuConfigError('reportOnly.authentication', 'a boolean', authentication)
  const rateLimitHeaders = group_.rateLimitHeaders ?? true
  if (typeof rateLimitHeaders !== 'boolean') throw new SaikuConfigError('reportOnly.rateLimitHeaders', 'a boolean', rateLimitHeaders)
  return Object.freeze({ limits: limitsFor, authentication, rateLimitHeaders })
}

function metricsOption(options: Record<string, unknown>): MetricsSettings | null {
  if (options.metrics === false) return null
  const group_ = group(options, 'metrics')
  const meterProvider = group_.meterProvider as MeterProvider | undefined
  if (meterProvider !== undefined && typeof meterProvider?.getMeter !== 'function') {
    throw new SaikuConfigError('metrics.meterProvider', 'a MeterProvider (an object with getMeter)', meterProvider)
  }
  const tenantIds = group_.tenantIds ?? false
  if (typeof tenantIds !== 'boolean') throw new SaikuConfigError('metrics.tenantIds', 'a boolean', tenantIds)
  return Object.freeze({ meterProvider, tenantIds })
}

// A realm goes inside a quoted-string; keep it to characters that need no escaping.
const REALM_PATTERN = /^[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}$/

/** Checks every option once, at construction, and returns a frozen configuration. Never mutates its input. */
export function resolveOptions(input: SaikuOptions = {}): ResolvedOptions {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new SaikuConfigError('options', 'an object', input)
  }
  const options = input as Record<string, unknown>
  checkKnown('', options, Object.keys(KNOWN_OPTIONS))

  const realm = options.realm ?? 'saiku'
  if (typeof realm !== 'string' || !REALM_PATTERN.test(realm)) {
    throw new SaikuConfigError('realm', '1 to 64 printable ASCII characters without quotes or backslashes', realm)
  }

  const limiter = group(options, 'limiter')
  const factory = optionalFunction<RateLimiterFactory>('limiter.factory', limiter.factory)
  const backend = limiter.backend as LimiterBackend | undefined
  if (backend !== undefined && typeof backend?.consume !== 'function') {
    throw new SaikuConfigError('limiter.backend', 'an object with a consume(tenantKey, limits) method', backend)
  }
  if (backend !== undefined && factory !== undefined) {
    throw new SaikuConfigError('limiter', 'either factory or backend, not both', 'both')
  }
  const windows = oneOf<WindowKind>('windows', options.windows, WINDOW_KINDS, backend?.windows ?? 'fixed')
  if (windows === 'rolling' && factory !== undefined) {
    throw new SaikuConfigError('windows', '"fixed" with limiter.factory (rate-limiter-flexible counts fixed windows only; rolling windows need the memory backend or @saiku/redis)', windows)
  }
  if (backend !== undefined && windows !== (backend.windows ?? 'fixed')) {
    throw new SaikuConfigError('windows', `"${backend.windows ?? 'fixed'}", as limiter.backend counts (build the backend with windows: "${windows}")`, windows)
  }
  const insuranceOption = limiter.insurance ?? false
  if (typeof insuranceOption !== 'boolean' && typeof (insuranceOption as LimiterBackend)?.consume !== 'function') {
    throw new SaikuConfigError('limiter.insurance', 'a boolean or a LimiterBackend', insuranceOption)
  }
  const keyPrefix = limiter.keyPrefix ?? 'saiku'
  if (typeof keyPrefix !== 'string' || !/^[\w:.{}-]{1,64}$/.test(keyPrefix)) {
    throw new SaikuConfigError('limiter.keyPrefix', '1 to 64 characters of [A-Za-z0-9_:.{}-]', keyPrefix)
  }

  const cache = group(options, 'cache')
  const ttlMs = durationMs('cache.ttlMs', cache.ttlMs, 10_000)
  const maxEntries = cache.maxEntries ?? 10_000
  if (typeof maxEntries !== 'number' || !Number.isSafeInteger(maxEntries) || maxEntries < 0) {
    throw new SaikuConfigError('cache.maxEntries', 'a non-negative integer', maxEntries)
  }

  const failurePolicy = group(options, 'failurePolicy')
  const subscription = group(options, 'subscription')
  const required = subscription.required ?? true
  if (typeof required !== 'boolean') throw new SaikuConfigError('subscription.required', 'a boolean', required)
  const exemptPath = exemptPathsPredicate(subscription.exemptPaths)
  const isExemptFn = optionalFunction<(path: string, request: AuthRequest) => boolean>('subscription.isExempt', subscription.isExempt)
  const isExempt = (path: string, request: AuthRequest): boolean =>
    (exemptPath !== undefined && exemptPath(path)) || (isExemptFn !== undefined && isExemptFn(path, request) === true)

  let failedAuth: ResolvedOptions['failedAuth'] = null
  if (options.failedAuth !== false) {
    const group_ = options.failedAuth === undefined ? {} : group(options, 'failedAuth')
    const ipv6PrefixBits = group_.ipv6PrefixBits ?? 64
    if (typeof ipv6PrefixBits !== 'number' || !Number.isInteger(ipv6PrefixBits) || ipv6PrefixBits < 16 || ipv6PrefixBits > 128) {
      throw new SaikuConfigError('failedAuth.ipv6PrefixBits', 'an integer from 16 to 128', ipv6PrefixBits)
    }
    failedAuth = Object.freeze({
      perMinute: positiveInteger('failedAuth.perMinute', group_.perMinute, 30),
      ipv6PrefixBits,
      maxClients: positiveInteger('failedAuth.maxClients', group_.maxClients, 100_000),
      trustVerifiedMs: durationMs('failedAuth.trustVerifiedMs', group_.trustVerifiedMs, 3_600_000),
    })
  }

  const environments = options.environments ?? KEY_ENVIRONMENTS
  if (
    !Array.isArray(environments) ||
    environments.length === 0 ||
    !environments.every((env) => KEY_ENVIRONMENTS.includes(env as KeyEnvironment))
  ) {
    throw new SaikuConfigError('environments', 'a non-empty array of "live" and/or "test"', environments)
  }

  const pepper = options.pepper
  if (pepper !== undefined && !((typeof pepper === 'string' || Buffer.isBuffer(pepper)) && pepper.length >= 16)) {
    throw new SaikuConfigError('pepper', 'a string or Buffer of at least 16 characters', pepper, { secret: true })
  }

  const verifier = options.verifier as KeyVerifier | undefined
  if (verifier !== undefined && typeof verifier?.verify !== 'function') {
    throw new SaikuConfigError('verifier', 'an object with a verify(token) method', verifier)
  }

  const jwt = options.jwt as JwtVerifierOptions | KeyVerifier | undefined
  let jwtVerifier: KeyVerifier | undefined
  if (jwt !== undefined) {
    if (typeof jwt !== 'object' || jwt === null) throw new SaikuConfigError('jwt', 'JWT verifier options or a KeyVerifier', jwt)
    jwtVerifier = typeof (jwt as KeyVerifier).verify === 'function' ? (jwt as KeyVerifier) : createJwtVerifier(jwt as JwtVerifierOptions)
  }

  const tiers = resolveTierTable(options.tiers)
  return Object.freeze({
    realm,
    tiers,
    rateLimitHeaders: oneOf('rateLimitHeaders', options.rateLimitHeaders, RATE_LIMIT_HEADER_MODES, 'draft-11'),
    windows,
    limiter: Object.freeze({
      factory,
      backend,
      keyPrefix,
      maxTenants: positiveInteger('limiter.maxTenants', limiter.maxTenants, 100_000),
      timeoutMs: durationMs('limiter.timeoutMs', limiter.timeoutMs, 1_000, 1),
      insurance: insuranceOption === true ? createMemoryLimiter({ windows }) : insuranceOption === false ? undefined : (insuranceOption as LimiterBackend),
    }),
    cache: Object.freeze({
      ttlMs,
      negativeTtlMs: durationMs('cache.negativeTtlMs', cache.negativeTtlMs, ttlMs),
      maxEntries,
      maxStaleMs: durationMs('cache.maxStaleMs', cache.maxStaleMs, 60_000),
    }),
    keyStoreTimeoutMs: durationMs('keyStoreTimeoutMs', options.keyStoreTimeoutMs, 1_000, 1),
    failurePolicy: Object.freeze({
      keyStore: oneOf<KeyStoreFailurePolicy>('failurePolicy.keyStore', failurePolicy.keyStore, ['closed', 'serve-stale'], 'closed'),
      limiter: oneOf<LimiterFailurePolicy>('failurePolicy.limiter', failurePolicy.limiter, ['closed', 'open'], 'closed'),
    }),
    subscription: Object.freeze({ required, isExempt }),
    failedAuth,
    environments: Object.freeze([...(environments as KeyEnvironment[])]),
    pepper,
    lastUsedResolutionMs: durationMs('lastUsedResolutionMs', options.lastUsedResolutionMs, 60_000),
    verifier,
    jwtVerifier,
    cost: optionalFunction<(request: CostRequest) => number>('cost', options.cost),
    reportOnly: reportOnlyOption(options, tiers),
    metrics: metricsOption(options),
    onDecision: optionalFunction<(event: DecisionEvent) => void>('onDecision', options.onDecision),
    onError: optionalFunction<(error: Error) => void>('onError', options.onError),
  })
}
