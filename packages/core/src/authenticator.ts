import { clientKey } from './client-address.js'
import type { AuthDecision, AuthRequest } from './decision.js'
import { SaikuConfigError } from './errors.js'
import { FailureBudget } from './failure-budget.js'
import { createDecisionReporter, createErrorReporter } from './hooks.js'
import { createCompositeVerifier, createJwtVerifier, type JwtVerifierOptions } from './jwt.js'
import type { LimitDecision } from './limiter.js'
import { chooseLimiter } from './limiter-choice.js'
import { createKeyManager, type KeyManager } from './management.js'
import type { MemoryLimiterBackend } from './memory-limiter.js'
import { createCoreMetrics, type CoreMetrics } from './metrics.js'
import { resolveOptions, type ResolvedOptions, type SaikuOptions } from './options.js'
import { createKeyLookup } from './lookups.js'
import { createPipeline } from './pipeline.js'
import { createCounter, missingQuota } from './counter.js'
import { createAdmissionMarks } from './admission-marks.js'
import { createRefusals } from './refusals.js'
import { requestIp } from './route-path.js'
import { announceKeyStoreChange, onKeyStoreChange } from './store-events.js'
import type { KeyStore } from './store.js'
import { createTenantLoader } from './tenants.js'
import { asStoreError } from './errors.js'
import { withTimeout } from './timeout.js'
import { usageFromDecision, type TenantUsage } from './usage.js'
import {
  DAY_MS,
  resolveUsageQuery,
  summarizeUsage,
  UsageRecorder,
  usageStoreOf,
  type UsageHistory,
  type UsageHistoryQuery,
} from './usage-history.js'
import { createApiKeyVerifier, sourceKeyStateFromStore, type ApiKeyVerifier, type KeyVerifier } from './verifier.js'

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
  /**
   * The tenant's requests over a range, per hour or UTC day, from the store's buckets and those this
   * process has not written yet (`usageHistory` must be on). A bad query rejects with a
   * `SaikuInputError` naming the field; a store failure with a `SaikuStoreError`.
   */
  usageHistory(tenantId: string, query: UsageHistoryQuery): Promise<UsageHistory>
  /**
   * Writes the usage buckets gathered so far (at shutdown, before the store closes); resolves with how
   * many. Rejects with a `SaikuStoreError` when the store fails: the buckets are kept for the next try.
   * Resolves with 0 when `usageHistory` is off.
   */
  flushUsageHistory(): Promise<number>
  /** Stops listening for store changes and the usage history's timer, and writes its last buckets (a failure goes to `onError`). */
  close(): void
  /** How much this process holds: every number is bounded by an option. */
  stats(): AuthenticatorStats
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
  /** Usage buckets waiting to be written: at most `usageHistory.maxPendingBuckets`; null when it is off. */
  readonly pendingUsageBuckets: number | null
  /** Decisions that usage history did not count, its buckets being full (each reported to `onError`); null when it is off. */
  readonly droppedUsageDecisions: number | null
}
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
  // Null without a MeterProvider: then no call below is timed or counted.
  const metrics = options.metrics === null ? null : createCoreMetrics(options.metrics)
  const reportError = createErrorReporter(options)
  // The budget is built below; a key the store says no longer works loses its trust there.
  let withdraw: (keyId: string) => void = () => {}
  const { verifier, apiKeyVerifier } = assembleVerifier(store, options, now, reportError, metrics, (keyId) =>
    withdraw(keyId),
  )
  const limiter = chooseLimiter(options, now, metrics)
  const tenants = createTenantLoader(store, options, now, metrics, reportError)
  const failureBudget =
    options.failedAuth === null
      ? null
      : new FailureBudget({
          perMinute: options.failedAuth.perMinute,
          perHour: options.failedAuth.perMinute * 10,
          maxClients: options.failedAuth.maxClients,
          trustVerifiedMs: options.failedAuth.trustVerifiedMs,
          maxTrustedKeys: Math.max(1, options.cache.maxEntries),
          maxLookupsInFlight: options.failedAuth.maxLookupsInFlight,
          lookupsOverBudgetPerMinute: options.failedAuth.lookupsOverBudgetPerMinute,
          maxQueuedLookups: 16 * options.failedAuth.maxLookupsInFlight,
          queueWaitMs: options.keyStoreTimeoutMs,
          now,
        })
  if (failureBudget !== null) withdraw = (keyId) => failureBudget.distrust(keyId)
  const history = options.usageHistory
  const recorder =
    history === null
      ? null
      : new UsageRecorder({
          store: usageStoreOf(store),
          maxPendingBuckets: history.maxPendingBuckets,
          flushIntervalMs: history.flushIntervalMs,
          retentionMs: history.retentionDays * DAY_MS,
          now,
          reportError,
        })
  const report = createDecisionReporter(
    options,
    metrics,
    (tenantId) => tenants.peek(tenantId)?.view.tier ?? null,
    reportError,
    recorder,
  )
  const clientOf = (request: AuthRequest): string => clientKey(requestIp(request), options.failedAuth!.ipv6PrefixBits)
  const refusals = createRefusals({ options, report, reportError, metrics, failureBudget, clientOf })
  const check = createPipeline({
    options,
    now,
    verifier,
    lookUp: createKeyLookup({
      verifier,
      failureBudget,
      clientOf,
      userVerifier: options.verifier !== undefined,
      customVerifier: options.verifier !== undefined || options.jwt !== undefined,
      timeoutMs: options.keyStoreTimeoutMs,
      refusals,
    }),
    tenants,
    counter: createCounter(limiter, options.failurePolicy.limiter === 'open', reportError),
    marks: createAdmissionMarks(limiter.identity),
    failureBudget,
    refusals,
    report,
    reportError,
  })

  const stopListening = onKeyStoreChange(store, (change) => {
    if (change.kind === 'key') {
      // A key changes when it is revoked (here or, through a change feed, elsewhere): its trust goes with its cache entry.
      failureBudget?.distrust(change.keyId)
      verifier.invalidateKey?.(change.keyId)
    } else if (change.kind === 'tenant') tenants.forget(change.tenantId)
    else {
      apiKeyVerifier?.clear()
      tenants.forgetAll()
    }
  })

  async function usage(tenantId: string): Promise<TenantUsage | null> {
    let tenant
    try {
      tenant = await tenants.load(tenantId)
    } catch (error) {
      throw asStoreError(error, 'key_store', 'key store findTenant failed')
    }
    if (tenant === null) return null
    if (tenant.limits === null) throw tenant.limitsError!
    const backend = limiter.limiter
    const { limits } = tenant
    if (backend.peek === undefined) {
      return {
        tenantId,
        limits,
        minute: null,
        hour: null,
        ...(limits.perDay === undefined ? {} : { day: null }),
        ...(limits.perMonth === undefined ? {} : { month: null }),
      }
    }
    let decision: LimitDecision
    try {
      const peeked = backend.peek(tenantId, tenant.limits)
      decision = await (limiter.timeoutMs === 0
        ? peeked
        : withTimeout(peeked, limiter.timeoutMs, 'limiter', 'rate limiter'))
    } catch (error) {
      throw asStoreError(error, 'limiter', 'rate limiter peek failed')
    }
    const missing = missingQuota(limits, decision)
    if (missing !== null) throw missing
    return usageFromDecision(tenantId, limits, decision)
  }

  async function usageHistory(tenantId: string, query: UsageHistoryQuery): Promise<UsageHistory> {
    if (recorder === null)
      throw new SaikuConfigError('usageHistory', 'true (or an object) to read usage over time', undefined)
    const resolved = resolveUsageQuery(tenantId, query)
    let stored
    try {
      stored = await usageStoreOf(store).readUsage(resolved)
    } catch (error) {
      throw asStoreError(error, 'key_store', 'usage history read failed')
    }
    return summarizeUsage(resolved, [...stored, ...recorder.pendingFor(resolved)])
  }

  return {
    authenticate(request) {
      const outcome = check(request)
      return outcome instanceof Promise ? outcome : Promise.resolve(outcome)
    },
    check,
    usage,
    usageHistory,
    flushUsageHistory: () => (recorder === null ? Promise.resolve(0) : recorder.flush()),
    keys: createKeyManager(store, { pepper: options.pepper, now }),
    options,
    // Announced: every authenticator of this store in this process hears it, and a change feed carries it to the others.
    invalidateKey(keyId) {
      announceKeyStoreChange(store, { kind: 'key', keyId })
    },
    invalidateTenant(tenantId) {
      announceKeyStoreChange(store, { kind: 'tenant', tenantId })
    },
    close() {
      stopListening()
      // Reported through onError by the write itself.
      recorder?.close().catch(() => {})
    },
    stats: () => ({
      cachedKeys: apiKeyVerifier?.cachedKeys ?? 0,
      cachedTenants: tenants.size,
      countedTenants:
        'trackedTenants' in limiter.limiter ? (limiter.limiter as MemoryLimiterBackend).trackedTenants : null,
      countedClients: failureBudget?.trackedClients ?? null,
      pendingUsageBuckets: recorder?.stats().pendingBuckets ?? null,
      droppedUsageDecisions: recorder?.stats().droppedDecisions ?? null,
    }),
  }
}

/** The API-key verifier (unless `verifier` replaces it), behind a JWT verifier when `jwt` is set. */
function assembleVerifier(
  store: KeyStore,
  options: ResolvedOptions,
  now: () => number,
  reportError: (error: Error) => void,
  metrics: CoreMetrics | null,
  onKeyWithdrawn: (keyId: string) => void,
): { readonly verifier: KeyVerifier; readonly apiKeyVerifier: ApiKeyVerifier | undefined } {
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
          onKeyWithdrawn,
          metrics,
        })
      : undefined
  const keyVerifier: KeyVerifier = options.verifier ?? apiKeyVerifier!
  const { jwt } = options
  if (jwt === undefined) return { verifier: keyVerifier, apiKeyVerifier }
  const verifier = createCompositeVerifier({
    apiKeys: keyVerifier,
    others: 'verify' in jwt && typeof jwt.verify === 'function' ? jwt : createJwtVerifier(jwt as JwtVerifierOptions),
    environments: options.environments,
    sourceKeys:
      apiKeyVerifier === undefined
        ? sourceKeyStateFromStore(store, options.keyStoreTimeoutMs)
        : (keyId) => apiKeyVerifier.keyState(keyId),
  })
  return { verifier, apiKeyVerifier }
}
