import {
  DEFAULT_TIERS,
  limitsForTenant,
  SaikuConfigError,
  SaikuHttpError,
  type Subscription,
  type TenantAdminStore,
  type TenantRecord,
  type WindowLimits,
} from '@saiku/core'
import { sameSubscription } from '@saiku/core/store'
import { TRIAL_DAYS } from './api.js'
import type { SubscriptionChoice } from './tenants.js'

/** What `saiku tenants set` changes; a field left out keeps its value. */
export interface TenantChange {
  readonly tier?: string
  /** The tenant's own limits; `null` drops them, so its tier's apply. */
  readonly limits?: WindowLimits | null
  readonly subscription?: SubscriptionChoice
}

/** The options of `tenants set` as the command line gives them. */
export interface TenantChangeOptions {
  readonly tier?: string | undefined
  readonly perMinute?: string | undefined
  readonly perHour?: string | undefined
  readonly tierLimits?: boolean | undefined
  readonly subscription?: string | undefined
}

export const TIER_NAMES: readonly string[] = Object.keys(DEFAULT_TIERS)
export const SUBSCRIPTION_CHOICES: readonly SubscriptionChoice[] = ['none', 'trial', 'active']

/** A bad value: the CLI reports it as a usage error (exit 2), like every `invalid_request`. */
function invalid(message: string): SaikuHttpError {
  return new SaikuHttpError('invalid_request', message)
}

function positiveInteger(name: string, value: string): number {
  if (!/^[1-9]\d{0,15}$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw invalid(`--${name}: expected a positive integer, got ${JSON.stringify(value)}`)
  }
  return Number(value)
}

/**
 * Checks the options of `tenants set` without the store, so a bad one is refused
 * before anything is opened or written. Throws an `invalid_request` error.
 */
export function readTenantChange(options: TenantChangeOptions): TenantChange {
  const { tier, subscription } = options
  if (tier !== undefined && !TIER_NAMES.includes(tier))
    throw invalid(`--tier: expected one of ${TIER_NAMES.join(', ')}, got ${JSON.stringify(tier)}`)
  if (subscription !== undefined && !(SUBSCRIPTION_CHOICES as readonly string[]).includes(subscription)) {
    throw invalid(
      `--subscription: expected one of ${SUBSCRIPTION_CHOICES.join(', ')}, got ${JSON.stringify(subscription)}`,
    )
  }
  if ((options.perMinute === undefined) !== (options.perHour === undefined))
    throw invalid('--per-minute and --per-hour go together')
  let limits: WindowLimits | null | undefined
  if (options.perMinute !== undefined && options.perHour !== undefined) {
    if (options.tierLimits === true)
      throw invalid('--tier-limits drops the limits that --per-minute and --per-hour set: give one or the other')
    const perMinute = positiveInteger('per-minute', options.perMinute)
    const perHour = positiveInteger('per-hour', options.perHour)
    if (perHour < perMinute) throw invalid(`--per-hour: expected at least --per-minute (${perMinute}), got ${perHour}`)
    limits = { perMinute, perHour }
  } else if (options.tierLimits === true) {
    limits = null
  }
  if (tier !== undefined && DEFAULT_TIERS[tier] === 'custom' && (limits === undefined || limits === null)) {
    throw invalid(`--tier ${tier}: the ${tier} tier has no limits of its own; give --per-minute and --per-hour`)
  }
  const change: TenantChange = {
    ...(tier === undefined ? {} : { tier }),
    ...(limits === undefined ? {} : { limits }),
    ...(subscription === undefined ? {} : { subscription: subscription as SubscriptionChoice }),
  }
  if (Object.keys(change).length === 0)
    throw invalid('nothing to change: give --tier, --per-minute and --per-hour, --tier-limits or --subscription')
  return change
}

/** A new subscription keeps the billing anchor; a trial or plan started without one anchors it on today. */
function subscriptionFor(choice: SubscriptionChoice, current: Subscription, nowMs: number): Subscription {
  const billingAnchor = current.billingAnchor ?? (choice === 'none' ? null : new Date(nowMs))
  if (choice === 'trial')
    return { status: 'trialing', trialEndsAt: new Date(nowMs + TRIAL_DAYS * 86_400_000), billingAnchor }
  return { status: choice, trialEndsAt: null, billingAnchor }
}

/** An operator's tier change replaces a downgrade the tenant scheduled; a cancellation stays. */
function withoutScheduledTier(subscription: Subscription): Subscription {
  if (subscription.scheduledTier == null) return subscription
  const { scheduledTier: _dropped, scheduledChangeAt: _at, ...rest } = subscription
  return rest
}

/**
 * The tenant as the change leaves it. Throws an `invalid_request` error when the
 * result has no limits to apply (an enterprise tenant told to use its tier's).
 */
export function applyTenantChange(current: TenantRecord, change: TenantChange, nowMs = Date.now()): TenantRecord {
  const next: TenantRecord = {
    ...current,
    tier: change.tier ?? current.tier,
    limits: change.limits === undefined ? (current.limits ?? null) : change.limits,
    subscription:
      change.subscription !== undefined
        ? subscriptionFor(change.subscription, current.subscription, nowMs)
        : change.tier !== undefined && change.tier !== current.tier
          ? withoutScheduledTier(current.subscription)
          : current.subscription,
  }
  try {
    limitsForTenant(DEFAULT_TIERS, next)
  } catch (error) {
    if (!(error instanceof SaikuConfigError)) throw error
    throw invalid(
      `tenant "${current.tenantSlug}" would have no limits on the ${next.tier} tier: give --per-minute and --per-hour`,
    )
  }
  return next
}

/** The limits a tenant's requests are counted against: its own, else its tier's. */
export function effectiveLimits(tenant: TenantRecord): WindowLimits {
  return limitsForTenant(DEFAULT_TIERS, tenant)
}

export interface TenantChangeResult {
  readonly before: TenantRecord
  readonly after: TenantRecord
  /** False when the tenant already was as asked: nothing was written. */
  readonly changed: boolean
}

function sameTenant(a: TenantRecord, b: TenantRecord): boolean {
  const view = (t: TenantRecord) => JSON.stringify([t.tier, t.limits?.perMinute ?? null, t.limits?.perHour ?? null])
  return view(a) === view(b) && sameSubscription(a.subscription, b.subscription)
}

/**
 * Changes a tenant in place. The store records the write in its change channel
 * (SQLite's change log, PostgreSQL's NOTIFY), so running servers drop their cached
 * copy and apply the new tier or limits on the next request. Rate-limit counts are
 * kept per tenant, not per tier, so they carry on. Null when no tenant has the slug.
 */
export async function setTenant(
  store: TenantAdminStore,
  slug: string,
  change: TenantChange,
  nowMs = Date.now(),
): Promise<TenantChangeResult | null> {
  const before = await store.findTenantBySlug(slug)
  if (before === null) return null
  const after = applyTenantChange(before, change, nowMs)
  if (sameTenant(before, after)) return { before, after: before, changed: false }
  await store.putTenant(after)
  return { before, after, changed: true }
}
