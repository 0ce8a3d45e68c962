import type { MeterProvider } from '@opentelemetry/api'
import type { AuthRequest, CostRequest, DecisionEvent } from './decision.js'
import { createErrorLog } from './error-log.js'
import { SaikuConfigError } from './errors.js'
import { checkRealm, DEFAULT_REALM, RATE_LIMIT_HEADER_MODES, type RateLimitHeaderMode } from './http.js'
import type { JwtVerifierOptions } from './jwt.js'
import { KEY_ENVIRONMENTS, type KeyEnvironment } from './keys.js'
import type { LimiterBackend } from './limiter.js'
import { WINDOW_KINDS, type WindowKind } from './memory-limiter.js'
import type { MetricsSettings } from './metrics.js'
import { PREFLIGHT_MODES, type PreflightMode } from './preflight.js'
import { QUOTAS_NEED_ANOTHER_BACKEND, type RateLimiterFactory } from './rate-limiter-flexible.js'
import { resolveTierTable, type TierLimits, type TierTable } from './tiers.js'
import {
  booleanOption,
  checkKnown,
  durationMs,
  integerInRange,
  isPlainObject,
  nonNegativeInteger,
  oneOf,
  optionalFunction,
  optionalObjectWith,
  optionGroup,
  positiveInteger,
  stringSet,
} from './validate.js'
import type { KeyVerifier } from './verifier.js'

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
    /**
     * A predicate instead of, or beside, `exemptPaths`; it receives the same mount-relative path, case kept,
     * and exempts only when it answers `true`. Asked only of tenants without a subscription. It may be async;
     * one that throws or rejects is a JSON 500 `internal_error` and an `onError` call.
     */
    isExempt?: (path: string, request: AuthRequest) => boolean | PromiseLike<boolean>
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
         * A key ID whose whole decision this process admitted within this time (and
         * before the key expires) reaches its cache entry or the store whatever its
         * address has spent, so neighbours' garbage cannot lock out a key in use; a
         * revocation or expiry takes it back. Garbage gains nothing by it: such lookups
         * are single-flight and cached, at most one per key ID per `cache.ttlMs`. 0 turns
         * it off. Default 3600000.
         */
        trustVerifiedMs?: number
        /**
         * Most store lookups one client address has in flight at once. A lookup that outlived
         * `keyStoreTimeoutMs` keeps its place until the store answers, so a slow store never
         * piles up abandoned calls. Past it, lookups wait in a queue (16 times this, for at most
         * `keyStoreTimeoutMs`), then get 503 with Retry-After: never 429. Default 8.
         */
        maxLookupsInFlight?: number
        /**
         * Store lookups a client address past its budget may still make each minute, across all
         * key IDs, so a valid key it has not failed with still verifies. 0 closes the store to the
         * address until its window ends. Default 5.
         */
        lookupsOverBudgetPerMinute?: number
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
   * window's limit is refused with a 429 that says it can never be admitted. It may
   * be async (the request waits for it). Any other value (negative, fractional, NaN,
   * not a number), a throw or a rejection is a 500 and an `onError` call.
   */
  cost?: (request: CostRequest) => number | PromiseLike<number>
  /**
   * CORS preflights. `'authenticate'` (default): an `OPTIONS` is authenticated as any request,
   * for apps that mount their CORS layer first (it ends the preflight before this runs).
   * `'pass'`: a true preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`, and
   * no Authorization header, as browsers send it) goes on to the next layer unauthenticated and
   * uncounted: no limiter call, no failed-authentication budget, no `onDecision` call, no metric.
   * An `OPTIONS` without those headers, or with an Authorization header, is authenticated as usual.
   */
  preflight?: PreflightMode
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
   * OpenTelemetry metrics (see docs/metrics.md for each instrument). Recorded through the
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
  /**
   * Called with every decision, for logs and metrics. Never receives a secret. It may be
   * async; it is not awaited, and the decision stands whatever it does: what it throws or
   * rejects with goes to `onError` (without one, it becomes a process warning, once per distinct message).
   */
  /**
   * Usage over time: each decision about a known tenant adds to hourly buckets per tenant and key
   * (admitted, and refused by reason), gathered in memory and written by the store's `addUsage` in
   * batches; read with `authenticator.usageHistory()`. `true` (or an object) turns it on; the store
   * must have `addUsage` and `readUsage`. Default off.
   */
  usageHistory?:
    | boolean
    | {
        /** False turns it off as `usageHistory: false` does. Default true when the object is given. */
        enabled?: boolean
        /** How often the gathered buckets are written. 0: only by `authenticator.flushUsageHistory()`. Default 5000. */
        flushIntervalMs?: number
        /** Buckets held in memory at most (one per tenant, key and hour); past it, decisions are dropped and reported. Default 100000. */
        maxPendingBuckets?: number
        /** Buckets older than this many days are pruned (through the store's `pruneUsage`); 0 keeps them. Default 90. */
        retentionDays?: number
      }
  onDecision?: (event: DecisionEvent) => unknown
  /**
   * Called with every store failure and misconfigured tenant, whatever the policy did with it,
   * and with what a `cost`, `subscription.isExempt` or `onDecision` hook threw or rejected with.
   * It may be async; it is not awaited. What it throws or rejects with becomes a process warning
   * (`SAIKU_HOOK_FAILED`), once per distinct message.
   * Default: a line on stderr, each distinct error at most once a minute. `false` (or `null`): nothing.
   */
  onError?: ((error: Error) => unknown) | false | null
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
    /** `true`: the authenticator counts in memory while the backend fails open. */
    readonly insurance: boolean | LimiterBackend
  }
  readonly cache: {
    readonly ttlMs: number
    readonly negativeTtlMs: number
    readonly maxEntries: number
    readonly maxStaleMs: number
  }
  readonly keyStoreTimeoutMs: number
  readonly failurePolicy: { readonly keyStore: KeyStoreFailurePolicy; readonly limiter: LimiterFailurePolicy }
  readonly subscription: {
    readonly required: boolean
    /** Whether a path needs no subscription: `exemptPaths`, then the user's predicate, its answer as given (perhaps a promise). */
    readonly isExempt: (path: string, request: AuthRequest) => boolean | PromiseLike<boolean>
  }
  readonly failedAuth: {
    readonly perMinute: number
    readonly ipv6PrefixBits: number
    readonly maxClients: number
    readonly trustVerifiedMs: number
    readonly maxLookupsInFlight: number
    readonly lookupsOverBudgetPerMinute: number
  } | null
  readonly environments: readonly KeyEnvironment[]
  readonly pepper: string | Buffer | undefined
  readonly lastUsedResolutionMs: number
  readonly verifier: KeyVerifier | undefined
  /** Options for `createJwtVerifier`, or a verifier of your own; the authenticator builds the former. */
  readonly jwt: JwtVerifierOptions | KeyVerifier | undefined
  readonly cost: ((request: CostRequest) => number | PromiseLike<number>) | undefined
  readonly preflight: PreflightMode
  readonly reportOnly: {
    /** Whether a tenant's limits are report-only, by tier and tenant ID. */
    readonly limits: (tier: string, tenantId: string) => boolean
    readonly authentication: boolean
    readonly rateLimitHeaders: boolean
  }
  readonly metrics: MetricsSettings | null
  /** Null: usage over time is not recorded. */
  readonly usageHistory: {
    readonly flushIntervalMs: number
    readonly maxPendingBuckets: number
    readonly retentionDays: number
  } | null
  readonly onDecision: ((event: DecisionEvent) => unknown) | undefined
  /** The hook given, the default log (one per authenticator), or undefined when turned off. */
  readonly onError: ((error: Error) => unknown) | undefined
}

/**
 * Every option's default, in one place. An option left out takes its value here;
 * the known option names, at the top and in each group, are this literal's keys.
 * `undefined`: nothing unless given (`tiers`: the spec's plans, `DEFAULT_TIERS`;
 * `cache.negativeTtlMs`: `cache.ttlMs`; `windows`: what `limiter.backend` counts, else fixed;
 * `onError`: a line on stderr, each distinct error at most once a minute).
 */
export const DEFAULTS: OptionDefaults = Object.freeze({
  realm: DEFAULT_REALM,
  tiers: undefined,
  rateLimitHeaders: 'draft-11',
  windows: undefined,
  limiter: Object.freeze({
    factory: undefined,
    backend: undefined,
    keyPrefix: 'saiku',
    maxTenants: 100_000,
    timeoutMs: 1_000,
    insurance: false,
  }),
  cache: Object.freeze({ ttlMs: 10_000, negativeTtlMs: undefined, maxEntries: 10_000, maxStaleMs: 60_000 }),
  keyStoreTimeoutMs: 1_000,
  failurePolicy: Object.freeze({ keyStore: 'closed', limiter: 'closed' }),
  subscription: Object.freeze({ required: true, exemptPaths: Object.freeze([]), isExempt: undefined }),
  failedAuth: Object.freeze({
    perMinute: 30,
    ipv6PrefixBits: 64,
    maxClients: 100_000,
    trustVerifiedMs: 3_600_000,
    maxLookupsInFlight: 8,
    lookupsOverBudgetPerMinute: 5,
  }),
  environments: KEY_ENVIRONMENTS,
  pepper: undefined,
  lastUsedResolutionMs: 60_000,
  verifier: undefined,
  jwt: undefined,
  cost: undefined,
  preflight: 'authenticate',
  reportOnly: Object.freeze({ limits: false, authentication: false, rateLimitHeaders: true }),
  metrics: Object.freeze({ meterProvider: undefined, tenantIds: false }),
  usageHistory: Object.freeze({
    enabled: false,
    flushIntervalMs: 5_000,
    maxPendingBuckets: 100_000,
    retentionDays: 90,
  }),
  onDecision: undefined,
  onError: undefined,
})

/** The type of `DEFAULTS`: each option's default value, or `undefined` for none. */
export interface OptionDefaults {
  readonly realm: string
  readonly tiers: undefined
  readonly rateLimitHeaders: RateLimitHeaderMode
  readonly windows: undefined
  readonly limiter: Readonly<{
    factory: undefined
    backend: undefined
    keyPrefix: string
    maxTenants: number
    timeoutMs: number
    insurance: boolean
  }>
  readonly cache: Readonly<{ ttlMs: number; negativeTtlMs: undefined; maxEntries: number; maxStaleMs: number }>
  readonly keyStoreTimeoutMs: number
  readonly failurePolicy: Readonly<{ keyStore: KeyStoreFailurePolicy; limiter: LimiterFailurePolicy }>
  readonly subscription: Readonly<{ required: boolean; exemptPaths: readonly string[]; isExempt: undefined }>
  readonly failedAuth: Readonly<{
    perMinute: number
    ipv6PrefixBits: number
    maxClients: number
    trustVerifiedMs: number
    maxLookupsInFlight: number
    lookupsOverBudgetPerMinute: number
  }>
  readonly environments: readonly KeyEnvironment[]
  readonly pepper: undefined
  readonly lastUsedResolutionMs: number
  readonly verifier: undefined
  readonly jwt: undefined
  readonly cost: undefined
  readonly preflight: PreflightMode
  readonly reportOnly: Readonly<{ limits: boolean; authentication: boolean; rateLimitHeaders: boolean }>
  readonly metrics: Readonly<{ meterProvider: undefined; tenantIds: boolean }>
  readonly usageHistory: Readonly<{
    enabled: boolean
    flushIntervalMs: number
    maxPendingBuckets: number
    retentionDays: number
  }>
  readonly onDecision: undefined
  readonly onError: undefined
}

function onErrorOption(value: unknown): ((error: Error) => unknown) | undefined {
  if (value === undefined) return createErrorLog()
  if (value === false || value === null) return undefined
  if (typeof value !== 'function')
    throw new SaikuConfigError('onError', 'a function, or false (or null) for no log', value)
  return value as (error: Error) => unknown
}

/** The options that are groups of options (`cache: { … }`). */
type GroupName =
  'limiter' | 'cache' | 'failurePolicy' | 'subscription' | 'failedAuth' | 'reportOnly' | 'metrics' | 'usageHistory'

function group(options: Record<string, unknown>, name: GroupName): Record<string, unknown> {
  return optionGroup(name, options[name], Object.keys(DEFAULTS[name]))
}

function exemptPathsPredicate(value: unknown): ((path: string) => boolean) | undefined {
  if (!Array.isArray(value)) throw new SaikuConfigError('subscription.exemptPaths', 'an array of paths', value)
  const prefixes = value.map((entry: unknown, index) => {
    if (typeof entry !== 'string' || !entry.startsWith('/')) {
      throw new SaikuConfigError(`subscription.exemptPaths[${index}]`, 'a path starting with "/"', entry)
    }
    return (entry.length > 1 && entry.endsWith('/') ? entry.slice(0, -1) : entry).toLowerCase()
  })
  if (prefixes.length === 0) return undefined
  // Whole segments only: "/me/billing" exempts "/me/billing/trial", not "/me/billingx"; and
  // without regard to case, as Express and @koa/router route by default.
  return (routed) => {
    const path = routed.toLowerCase()
    return prefixes.some((prefix) => prefix === '/' || path === prefix || path.startsWith(`${prefix}/`))
  }
}

const NEVER = (): boolean => false
const ALWAYS = (): boolean => true

function reportOnlyOption(options: Record<string, unknown>, tiers: TierTable): ResolvedOptions['reportOnly'] {
  const given = group(options, 'reportOnly')
  const defaults = DEFAULTS.reportOnly
  const limits = given.limits ?? defaults.limits
  let limitsFor: (tier: string, tenantId: string) => boolean
  if (typeof limits === 'boolean') limitsFor = limits ? ALWAYS : NEVER
  else if (isPlainObject(limits)) {
    checkKnown('reportOnly.limits', limits, ['tiers', 'tenants'])
    const byTier = stringSet('reportOnly.limits.tiers', limits.tiers, Object.keys(tiers), 'a tier of the tier table')
    const byTenant = stringSet('reportOnly.limits.tenants', limits.tenants)
    if (byTier.size === 0 && byTenant.size === 0)
      throw new SaikuConfigError('reportOnly.limits', 'true, false, or at least one tier or tenant', limits)
    limitsFor = (tier, tenantId) => byTier.has(tier) || byTenant.has(tenantId)
  } else throw new SaikuConfigError('reportOnly.limits', 'a boolean or { tiers, tenants }', limits)
  return Object.freeze({
    limits: limitsFor,
    authentication: booleanOption('reportOnly.authentication', given.authentication, defaults.authentication),
    rateLimitHeaders: booleanOption('reportOnly.rateLimitHeaders', given.rateLimitHeaders, defaults.rateLimitHeaders),
  })
}

function metricsOption(options: Record<string, unknown>): MetricsSettings | null {
  if (options.metrics === false) return null
  const given = group(options, 'metrics')
  const meterProvider = optionalObjectWith<MeterProvider>(
    'metrics.meterProvider',
    given.meterProvider,
    ['getMeter'],
    'a MeterProvider (an object with getMeter)',
  )
  return Object.freeze({
    meterProvider,
    tenantIds: booleanOption('metrics.tenantIds', given.tenantIds, DEFAULTS.metrics.tenantIds),
  })
}

function usageHistoryOption(options: Record<string, unknown>): ResolvedOptions['usageHistory'] {
  const value = options.usageHistory
  if (value === undefined || value === false) return null
  const given = value === true ? {} : group(options, 'usageHistory')
  const defaults = DEFAULTS.usageHistory
  if (!booleanOption('usageHistory.enabled', given.enabled, true)) return null
  return Object.freeze({
    flushIntervalMs: durationMs('usageHistory.flushIntervalMs', given.flushIntervalMs, defaults.flushIntervalMs),
    maxPendingBuckets: positiveInteger(
      'usageHistory.maxPendingBuckets',
      given.maxPendingBuckets,
      defaults.maxPendingBuckets,
    ),
    retentionDays: integerInRange('usageHistory.retentionDays', given.retentionDays, defaults.retentionDays, 0, 36_500),
  })
}

function failedAuthOption(options: Record<string, unknown>): ResolvedOptions['failedAuth'] {
  if (options.failedAuth === false) return null
  const given = group(options, 'failedAuth')
  const defaults = DEFAULTS.failedAuth
  return Object.freeze({
    perMinute: positiveInteger('failedAuth.perMinute', given.perMinute, defaults.perMinute),
    ipv6PrefixBits: integerInRange('failedAuth.ipv6PrefixBits', given.ipv6PrefixBits, defaults.ipv6PrefixBits, 16, 128),
    maxClients: positiveInteger('failedAuth.maxClients', given.maxClients, defaults.maxClients),
    trustVerifiedMs: durationMs('failedAuth.trustVerifiedMs', given.trustVerifiedMs, defaults.trustVerifiedMs),
    maxLookupsInFlight: integerInRange(
      'failedAuth.maxLookupsInFlight',
      given.maxLookupsInFlight,
      defaults.maxLookupsInFlight,
      1,
      1_000,
    ),
    lookupsOverBudgetPerMinute: integerInRange(
      'failedAuth.lookupsOverBudgetPerMinute',
      given.lookupsOverBudgetPerMinute,
      defaults.lookupsOverBudgetPerMinute,
      0,
      1_000,
    ),
  })
}

/** rate-limiter-flexible counts windows of a fixed length from a first request: no calendar day or month. */
function refuseQuotasForFactory(tiers: TierTable): void {
  for (const [tier, limits] of Object.entries(tiers)) {
    if (limits === 'custom') continue
    for (const quota of ['perDay', 'perMonth'] as const) {
      if (limits[quota] !== undefined)
        throw new SaikuConfigError(`tiers.${tier}.${quota}`, QUOTAS_NEED_ANOTHER_BACKEND, limits[quota])
    }
  }
}

function limiterOption(options: Record<string, unknown>): { limiter: ResolvedOptions['limiter']; windows: WindowKind } {
  const given = group(options, 'limiter')
  const defaults = DEFAULTS.limiter
  const factory = optionalFunction<RateLimiterFactory>('limiter.factory', given.factory)
  const backend = optionalObjectWith<LimiterBackend>(
    'limiter.backend',
    given.backend,
    ['consume'],
    'an object with a consume(tenantKey, limits) method',
  )
  if (backend !== undefined && factory !== undefined)
    throw new SaikuConfigError('limiter', 'either factory or backend, not both', 'both')
  const counted = backend?.windows ?? 'fixed'
  const windows = oneOf<WindowKind>('windows', options.windows, WINDOW_KINDS, counted)
  if (windows === 'rolling' && factory !== undefined) {
    throw new SaikuConfigError(
      'windows',
      '"fixed" with limiter.factory (rate-limiter-flexible counts fixed windows only; rolling windows need the memory backend or @saiku/redis)',
      windows,
    )
  }
  if (backend !== undefined && windows !== counted) {
    throw new SaikuConfigError(
      'windows',
      `"${counted}", as limiter.backend counts (build the backend with windows: "${windows}")`,
      windows,
    )
  }
  const insurance = given.insurance ?? defaults.insurance
  if (typeof insurance !== 'boolean')
    optionalObjectWith<LimiterBackend>('limiter.insurance', insurance, ['consume'], 'a boolean or a LimiterBackend')
  const keyPrefix = given.keyPrefix ?? defaults.keyPrefix
  if (typeof keyPrefix !== 'string' || !/^[\w:.{}-]{1,64}$/.test(keyPrefix)) {
    throw new SaikuConfigError('limiter.keyPrefix', '1 to 64 characters of [A-Za-z0-9_:.{}-]', keyPrefix)
  }
  const limiter = Object.freeze({
    factory,
    backend,
    keyPrefix,
    maxTenants: positiveInteger('limiter.maxTenants', given.maxTenants, defaults.maxTenants),
    timeoutMs: durationMs('limiter.timeoutMs', given.timeoutMs, defaults.timeoutMs, 1),
    insurance: insurance as boolean | LimiterBackend,
  })
  return { limiter, windows }
}

/**
 * Checks every option once, at construction, and returns a frozen configuration:
 * values only, nothing built. Never mutates its input.
 */
export function resolveOptions(input: SaikuOptions = {}): ResolvedOptions {
  if (!isPlainObject(input)) throw new SaikuConfigError('options', 'an object', input)
  const options: Record<string, unknown> = input
  checkKnown('', options, Object.keys(DEFAULTS))

  const realm = checkRealm('realm', options.realm)
  const { limiter, windows } = limiterOption(options)

  const cache = group(options, 'cache')
  const ttlMs = durationMs('cache.ttlMs', cache.ttlMs, DEFAULTS.cache.ttlMs)

  const failurePolicy = group(options, 'failurePolicy')
  const subscription = group(options, 'subscription')
  const exemptPath = exemptPathsPredicate(subscription.exemptPaths ?? DEFAULTS.subscription.exemptPaths)
  const isExemptFn = optionalFunction<(path: string, request: AuthRequest) => boolean | PromiseLike<boolean>>(
    'subscription.isExempt',
    subscription.isExempt,
  )
  // The predicate's answer as it gave it, perhaps a promise: the pipeline calls this as the user hook it is.
  const isExempt = (path: string, request: AuthRequest): boolean | PromiseLike<boolean> => {
    if (exemptPath !== undefined && exemptPath(path)) return true
    return isExemptFn === undefined ? false : isExemptFn(path, request)
  }

  const environments = options.environments ?? DEFAULTS.environments
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

  const jwt = options.jwt
  if (jwt !== undefined && !isPlainObject(jwt))
    throw new SaikuConfigError('jwt', 'JWT verifier options or a KeyVerifier', jwt)

  const tiers = resolveTierTable(options.tiers)
  if (limiter.factory !== undefined) refuseQuotasForFactory(tiers)
  return Object.freeze({
    realm,
    tiers,
    rateLimitHeaders: oneOf(
      'rateLimitHeaders',
      options.rateLimitHeaders,
      RATE_LIMIT_HEADER_MODES,
      DEFAULTS.rateLimitHeaders,
    ),
    windows,
    limiter,
    cache: Object.freeze({
      ttlMs,
      negativeTtlMs: durationMs('cache.negativeTtlMs', cache.negativeTtlMs, ttlMs),
      maxEntries: nonNegativeInteger('cache.maxEntries', cache.maxEntries, DEFAULTS.cache.maxEntries),
      maxStaleMs: durationMs('cache.maxStaleMs', cache.maxStaleMs, DEFAULTS.cache.maxStaleMs),
    }),
    keyStoreTimeoutMs: durationMs('keyStoreTimeoutMs', options.keyStoreTimeoutMs, DEFAULTS.keyStoreTimeoutMs, 1),
    failurePolicy: Object.freeze({
      keyStore: oneOf<KeyStoreFailurePolicy>(
        'failurePolicy.keyStore',
        failurePolicy.keyStore,
        ['closed', 'serve-stale'],
        DEFAULTS.failurePolicy.keyStore,
      ),
      limiter: oneOf<LimiterFailurePolicy>(
        'failurePolicy.limiter',
        failurePolicy.limiter,
        ['closed', 'open'],
        DEFAULTS.failurePolicy.limiter,
      ),
    }),
    subscription: Object.freeze({
      required: booleanOption('subscription.required', subscription.required, DEFAULTS.subscription.required),
      isExempt,
    }),
    failedAuth: failedAuthOption(options),
    environments: Object.freeze([...(environments as KeyEnvironment[])]),
    pepper,
    lastUsedResolutionMs: durationMs(
      'lastUsedResolutionMs',
      options.lastUsedResolutionMs,
      DEFAULTS.lastUsedResolutionMs,
    ),
    verifier: optionalObjectWith<KeyVerifier>(
      'verifier',
      options.verifier,
      ['verify'],
      'an object with a verify(token) method',
    ),
    jwt: jwt as JwtVerifierOptions | KeyVerifier | undefined,
    cost: optionalFunction<(request: CostRequest) => number | PromiseLike<number>>('cost', options.cost),
    preflight: oneOf('preflight', options.preflight, PREFLIGHT_MODES, DEFAULTS.preflight),
    reportOnly: reportOnlyOption(options, tiers),
    metrics: metricsOption(options),
    usageHistory: usageHistoryOption(options),
    onDecision: optionalFunction<(event: DecisionEvent) => unknown>('onDecision', options.onDecision),
    onError: onErrorOption(options.onError),
  })
}
