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
  readonly perDay?: string | undefined
  readonly perMonth?: string | undefined
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

/** The own-limit options of `tenants create` and `tenants set` as the command line gives them. */
export interface OwnLimitOptions {
  readonly perMinute?: string | undefined
  readonly perHour?: string | undefined
  readonly perDay?: string | undefined
  readonly perMonth?: string | undefined
}

/**
 * A tenant's own limits from `--per-minute`, `--per-hour` and the optional `--per-day`, `--per-month`;
 * undefined when none is given. The limits are given whole, so a day or month quota needs the minute and
 * hour beside it, and each window is at least the one before it, as the store checks. Throws an
 * `invalid_request` error.
 */
export function readOwnLimits(options: OwnLimitOptions): WindowLimits | undefined {
  const { perMinute: minute, perHour: hour, perDay: day, perMonth: month } = options
  if (minute === undefined && hour === undefined) {
    if (day !== undefined || month !== undefined)
      throw invalid(
        `--per-${day === undefined ? 'month' : 'day'}: a tenant's own limits; give it with --per-minute and --per-hour`,
      )
    return undefined
  }
  if (minute === undefined || hour === undefined) throw invalid('--per-minute and --per-hour go together')
  const perMinute = positiveInteger('per-minute', minute)
  const perHour = positiveInteger('per-hour', hour)
  if (perHour < perMinute) throw invalid(`--per-hour: expected at least --per-minute (${perMinute}), got ${perHour}`)
  const perDay = day === undefined ? undefined : positiveInteger('per-day', day)
  if (perDay !== undefined && perDay < perHour)
    throw invalid(`--per-day: expected at least --per-hour (${perHour}), got ${perDay}`)
  const perMonth = month === undefined ? undefined : positiveInteger('per-month', month)
  const floor = perDay === undefined ? { name: 'per-hour', value: perHour } : { name: 'per-day', value: perDay }
  if (perMonth !== undefined && perMonth < floor.value)
    throw invalid(`--per-month: expected at least --${floor.name} (${floor.value}), got ${perMonth}`)
  return {
    perMinute,
    perHour,
    ...(perDay === undefined ? {} : { perDay }),
    ...(perMonth === undefined ? {} : { perMonth }),
  }
}

/** `5/min and 100/h`, with the day and month quotas where they are set: `5/min, 100/h, 1000/day and 20000/month`. */
export function describeLimits(limits: WindowLimits): string {
  const parts = [`${limits.perMinute}/min`, `${limits.perHour}/h`]
  if (limits.perDay !== undefined) parts.push(`${limits.perDay}/day`)
  if (limits.perMonth !== undefined) parts.push(`${limits.perMonth}/month`)
  return `${parts.slice(0, -1).join(', ')} and ${parts.at(-1)!}`
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
  let limits: WindowLimits | null | undefined = readOwnLimits(options)
  if (limits !== undefined) {
    if (options.tierLimits === true)
      throw invalid('--tier-limits drops the limits that --per-minute and --per-hour set: give one or the other')
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
    throw invalid(
      'nothing to change: give --tier, --per-minute and --per-hour (with --per-day, --per-month), --tier-limits or --subscription',
    )
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
  const view = (t: TenantRecord) =>
    JSON.stringify([
      t.tier,
      t.limits?.perMinute ?? null,
      t.limits?.perHour ?? null,
      t.limits?.perDay ?? null,
      t.limits?.perMonth ?? null,
    ])
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
