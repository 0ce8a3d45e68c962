import { LoadingCache } from './cache.js'
import { monthStartDayOf, monthWindowAt } from './calendar.js'
import type { TenantView } from './decision.js'
import { asStoreError, SaikuConfigError } from './errors.js'
import { rateLimitPolicy } from './http.js'
import type { CoreMetrics } from './metrics.js'
import type { ResolvedOptions } from './options.js'
import type { KeyStore, Subscription, TenantRecord } from './store.js'
import { keyStoreTrustCapMs } from './store-events.js'
import { limitsForTenant, type WindowLimits } from './tiers.js'
import { withTimeout } from './timeout.js'

/** A tenant as requests need it, worked out once per load: the view, its limits, its policy header. */
export interface CachedTenant {
  readonly view: TenantView
  readonly subscription: Subscription
  readonly trialEndsAtMs: number
  /** Null when the tier table cannot serve this tenant: `limitsError` says why. */
  readonly limits: WindowLimits | null
  readonly limitsError: SaikuConfigError | null
  /**
   * `RateLimit-Policy`: with a `perMonth` quota it holds the month window's length, so it is
   * rebuilt by {@link policyAt} for the window from `policyFromMs` to `policyUntilMs`.
   */
  policy: string
  policyFromMs: number
  policyUntilMs: number
  /** `reportOnly.limits` chose this tenant, by tier or ID. */
  readonly reportOnlyLimits: boolean
}

function toCachedTenant(tenant: TenantRecord, options: ResolvedOptions): CachedTenant {
  let limits: WindowLimits | null = null
  let limitsError: SaikuConfigError | null = null
  try {
    limits = withMonthStart(limitsForTenant(options.tiers, tenant), tenant)
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
    policy: limits === null || limits.perMonth !== undefined ? '' : rateLimitPolicy(limits),
    // A month's policy is built at the first request that needs it (its window is not known before).
    policyFromMs: limits?.perMonth === undefined ? -Infinity : 0,
    policyUntilMs: limits?.perMonth === undefined ? Infinity : 0,
    reportOnlyLimits: options.reportOnly.limits(tenant.tier, tenant.tenantId),
  }
}

/**
 * The limits with the day their month starts, from the subscription's billing anchor, when
 * they set `perMonth`: so a new anchor, like a new tier, applies when the tenant is next loaded.
 */
function withMonthStart(limits: WindowLimits, tenant: TenantRecord): WindowLimits {
  if (limits.perMonth === undefined) return limits
  const anchor = tenant.subscription.billingAnchor
  // A store may hand back a date as a string or a number, as it may trialEndsAt.
  const anchorDate = anchor == null ? null : new Date(anchor)
  if (anchorDate !== null && !Number.isFinite(anchorDate.getTime())) {
    throw new SaikuConfigError(
      `tenants[${JSON.stringify(tenant.tenantSlug)}].subscription.billingAnchor`,
      'a valid Date or null',
      anchor,
    )
  }
  return Object.freeze({ ...limits, monthStartDay: monthStartDayOf(anchorDate) })
}

/** The tenant's `RateLimit-Policy` at `nowMs`: with a month quota, for the month window that holds it. */
export function policyAt(tenant: CachedTenant, nowMs: number): string {
  if (nowMs >= tenant.policyFromMs && nowMs < tenant.policyUntilMs) return tenant.policy
  const limits = tenant.limits!
  const month = monthWindowAt(limits.monthStartDay ?? 1, nowMs)
  tenant.policy = rateLimitPolicy(limits, month.endMs - month.startMs)
  tenant.policyFromMs = month.startMs
  tenant.policyUntilMs = month.endMs
  return tenant.policy
}

export function hasActiveSubscription(tenant: CachedTenant, nowMs: number): boolean {
  const { status } = tenant.subscription
  return status === 'active' || (status === 'trialing' && tenant.trialEndsAtMs > nowMs)
}

export interface TenantLoader {
  /** The cached tenant while fresh (null: known not to exist); undefined when it must be loaded. */
  cached(tenantId: string, nowMs: number): CachedTenant | null | undefined
  /** From the store, once for concurrent callers; rejects with the store's failure. */
  load(tenantId: string): Promise<CachedTenant | null>
  /** From the store, or, with `failurePolicy.keyStore: 'serve-stale'`, a stale entry while the store fails. */
  loadOrStale(tenantId: string): Promise<CachedTenant | null>
  /** What is cached, fresh or not, without loading (metrics read the tier). */
  peek(tenantId: string): CachedTenant | null | undefined
  forget(tenantId: string): void
  forgetAll(): void
  readonly size: number
}

/**
 * Tenants cached by ID, bounded by `cache.maxEntries`, fresh for `cache.ttlMs` and
 * refreshed in the background when due, so a tier or subscription change applies
 * within that time without making a request wait.
 */
export function createTenantLoader(
  store: KeyStore,
  options: ResolvedOptions,
  now: () => number,
  metrics: CoreMetrics | null,
  reportError: (error: Error) => void,
): TenantLoader {
  const tenants = new LoadingCache<CachedTenant | null>(options.cache.maxEntries, now)
  // While a change feed of the store is down, nothing read is trusted longer than the feed allows.
  const ttlMs = (): number => Math.min(options.cache.ttlMs, keyStoreTrustCapMs(store) ?? Infinity)
  const reportRefreshError = (error: unknown): void =>
    reportError(asStoreError(error, 'key_store', 'key store findTenant failed'))

  async function fromStore(tenantId: string): Promise<CachedTenant | null> {
    const started = metrics === null ? 0 : performance.now()
    let record: TenantRecord | null
    try {
      record = await withTimeout(
        store.findTenant(tenantId),
        options.keyStoreTimeoutMs,
        'key_store',
        'key store findTenant',
      )
    } catch (error) {
      metrics?.keyStoreCall('findTenant', started, false)
      throw error
    }
    metrics?.keyStoreCall('findTenant', started, true)
    return record === null ? null : toCachedTenant(record, options)
  }

  function load(tenantId: string): Promise<CachedTenant | null> {
    return tenants.load(tenantId, () => fromStore(tenantId), ttlMs)
  }

  return {
    cached(tenantId, nowMs) {
      const tenant = tenants.getFresh(tenantId, nowMs)
      metrics?.cache('tenant', tenant !== undefined)
      if (tenant !== undefined) tenants.refreshIfDue(tenantId, nowMs, fromStore, ttlMs, reportRefreshError)
      return tenant
    },
    load,
    async loadOrStale(tenantId) {
      try {
        return await load(tenantId)
      } catch (error) {
        const stale =
          options.failurePolicy.keyStore === 'serve-stale'
            ? tenants.getStale(tenantId, options.cache.maxStaleMs)
            : undefined
        if (stale === undefined) throw error
        reportError(asStoreError(error, 'key_store', 'key store findTenant failed'))
        return stale
      }
    },
    peek: (tenantId) => tenants.peek(tenantId),
    forget: (tenantId) => tenants.delete(tenantId),
    forgetAll: () => tenants.clear(),
    get size() {
      return tenants.size
    },
  }
}
