import {
  billingPeriodAt,
  DEFAULT_TIERS,
  SaikuHttpError,
  type PlanChange,
  type Subscription,
  type TenantAdminStore,
  type TenantRecord,
  type WindowLimits,
} from '@saiku/core'

// The Billing API's plan changes and cancellation. No payment provider is called: each change
// below is where one would be (charge the prorated difference on an upgrade, update the
// subscription's price on a downgrade, stop renewal on a cancellation) before the write.

/** The plans a tenant can choose itself: the tiers with limits of their own (enterprise's are agreed with sales). */
export const SELF_SERVICE_TIERS: readonly string[] = Object.keys(DEFAULT_TIERS).filter(
  (tier) => DEFAULT_TIERS[tier] !== 'custom',
)

/** How often a server applies the downgrades and cancellations whose period has ended, in every tenant. */
export const SETTLE_INTERVAL_MS = 60_000

/** What a billing change did, for the Activity log; absent when nothing changed. */
export interface BillingActivity {
  readonly action: string
  readonly target: string | null
}

export interface BillingResult {
  readonly status: number
  readonly body: BillingView
  readonly activity?: BillingActivity
}

export interface BillingView {
  readonly status: string
  readonly trialEndsAt: string | null
  readonly trialAvailable: boolean
  readonly tier: string
  readonly billingAnchor: string | null
  readonly currentPeriodStart: string
  readonly currentPeriodEnd: string
  readonly scheduledTier: string | null
  readonly scheduledChangeAt: string | null
  readonly cancelAtPeriodEnd: boolean
}

const iso = (date: Date | null | undefined): string | null => (date == null ? null : date.toISOString())

const trialEnded = (subscription: Subscription, nowMs: number): boolean =>
  subscription.status === 'trialing' && subscription.trialEndsAt != null && subscription.trialEndsAt.getTime() <= nowMs

/** GET /me/billing's body: the subscription, the plan, and the billing period that holds `nowMs`. */
export function billingView(tenant: TenantRecord, nowMs: number): BillingView {
  const { subscription } = tenant
  const period = billingPeriodAt(subscription.billingAnchor, nowMs)
  return {
    status: trialEnded(subscription, nowMs) ? 'trial_ended' : subscription.status,
    trialEndsAt: iso(subscription.trialEndsAt),
    trialAvailable: subscription.status !== 'active' && subscription.trialEndsAt == null,
    tier: tenant.tier,
    billingAnchor: iso(subscription.billingAnchor),
    currentPeriodStart: new Date(period.startMs).toISOString(),
    currentPeriodEnd: new Date(period.endMs).toISOString(),
    scheduledTier: subscription.scheduledTier ?? null,
    scheduledChangeAt: iso(subscription.scheduledChangeAt),
    cancelAtPeriodEnd: subscription.cancelAtPeriodEnd === true,
  }
}

/** The subscription with nothing scheduled. */
function unscheduled(subscription: Subscription): Subscription {
  return {
    status: subscription.status,
    trialEndsAt: subscription.trialEndsAt ?? null,
    billingAnchor: subscription.billingAnchor ?? null,
  }
}

/**
 * Records in Activity a change that the end of a billing period applied. Only the write that
 * applied it calls this, so each change is recorded once however many processes raced for it.
 * The change stands whatever the recorder does: it reports its own failures (a rejection is not
 * the billing read's or the sweep's to fail on).
 */
export type SettlementRecorder = (tenantId: string, activity: BillingActivity, at: Date) => Promise<void>

interface DueChange {
  readonly next: Subscription
  readonly plan: PlanChange
  /** What Activity says of it; null when the write only clears a schedule that changes nothing. */
  readonly activity: BillingActivity | null
}

/** The write that applies a change whose period has ended, or null when none is due at `nowMs`. */
function dueChange(tenant: TenantRecord, nowMs: number): DueChange | null {
  const { subscription } = tenant
  const at = subscription.scheduledChangeAt
  if (at == null || at.getTime() > nowMs) return null
  const canceled = subscription.cancelAtPeriodEnd === true
  const next: Subscription = canceled ? { ...unscheduled(subscription), status: 'canceled' } : unscheduled(subscription)
  const tier = subscription.scheduledTier ?? tenant.tier
  const activity: BillingActivity | null = canceled
    ? { action: 'subscription.canceled', target: tenant.tier }
    : tier !== tenant.tier
      ? { action: 'plan.changed', target: `${tenant.tier} → ${tier}` }
      : null
  return { next, plan: { expectedTier: tenant.tier, tier }, activity }
}

async function recordSettled(
  record: SettlementRecorder | undefined,
  tenantId: string,
  due: DueChange,
  nowMs: number,
): Promise<void> {
  if (record === undefined || due.activity === null) return
  try {
    await record(tenantId, due.activity, new Date(nowMs))
  } catch {
    // The recorder logs its own failures; the change is applied either way.
  }
}

const ATTEMPTS = 5

function busy(): SaikuHttpError {
  return new SaikuHttpError('service_unavailable', 'The subscription kept changing; retry shortly.')
}

/**
 * The tenant read through to the store (never a cache), with a downgrade or cancellation whose
 * period has ended applied first, by a conditional write: whichever process or request gets
 * there first applies it, once, and records it through `record`; the others read what it wrote.
 */
export async function settledTenant(
  store: TenantAdminStore,
  tenantId: string,
  nowMs: number,
  record?: SettlementRecorder,
): Promise<TenantRecord> {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const tenant = await store.findTenant(tenantId)
    if (tenant === null) throw new SaikuHttpError('not_found')
    const due = dueChange(tenant, nowMs)
    if (due === null) return tenant
    if (await store.replaceSubscription(tenantId, tenant.subscription, due.next, due.plan))
      await recordSettled(record, tenantId, due, nowMs)
  }
  throw busy()
}

/**
 * Applies every change whose period has ended, in every tenant: what a server runs every
 * {@link SETTLE_INTERVAL_MS}, so a tenant nobody reads the billing of still moves on time.
 * Resolves with the IDs of the tenants this call changed, each recorded through `record`.
 */
export async function settleDueSubscriptions(
  store: TenantAdminStore,
  nowMs: number,
  record?: SettlementRecorder,
): Promise<string[]> {
  const settled: string[] = []
  for (const tenant of await store.listTenants()) {
    const due = dueChange(tenant, nowMs)
    if (due !== null && (await store.replaceSubscription(tenant.tenantId, tenant.subscription, due.next, due.plan))) {
      settled.push(tenant.tenantId)
      await recordSettled(record, tenant.tenantId, due, nowMs)
    }
  }
  return settled
}

const windows = (limits: WindowLimits): number[] => [
  limits.perMinute,
  limits.perHour,
  limits.perDay ?? Infinity,
  limits.perMonth ?? Infinity,
]

/** An upgrade gives at least as much in every window; anything else is a downgrade. */
export function isUpgrade(from: string, to: string): boolean {
  const before = DEFAULT_TIERS[from]
  const after = DEFAULT_TIERS[to]
  if (before === undefined || before === 'custom' || after === undefined || after === 'custom') return false
  const was = windows(before)
  return windows(after).every((value, i) => value >= was[i]!)
}

function endsOn(date: Date | null | undefined): string {
  return date == null ? 'the end of the period' : date.toISOString().slice(0, 10)
}

/** The tier asked for, or a 400 naming the ones there are; enterprise is a 403 pointing to sales. */
export function requestedTier(tier: unknown): string {
  if (typeof tier !== 'string' || !Object.hasOwn(DEFAULT_TIERS, tier)) {
    throw new SaikuHttpError('invalid_request', `tier must be one of ${SELF_SERVICE_TIERS.join(', ')}.`)
  }
  if (!SELF_SERVICE_TIERS.includes(tier))
    throw new SaikuHttpError('forbidden', `The ${tier} plan has custom limits agreed with sales: contact sales for it.`)
  return tier
}

/** Writes `next` (and the tier) if nothing changed since `tenant` was read; false when something did. */
async function write(
  store: TenantAdminStore,
  tenant: TenantRecord,
  next: Subscription,
  plan?: PlanChange,
): Promise<boolean> {
  // The tier read is part of the condition even when it stays: an upgrade changes only the tier,
  // and a downgrade scheduled from the same reading must not win after it.
  return store.replaceSubscription(
    tenant.tenantId,
    tenant.subscription,
    next,
    plan ?? { expectedTier: tenant.tier, tier: tenant.tier },
  )
}

function lostRace(): SaikuHttpError {
  return new SaikuHttpError('conflict', 'The subscription changed while this request was made; read it and try again.')
}

/**
 * POST /me/billing/plan `{tier}`. An upgrade applies at once (the limits of the next request;
 * counts are per tenant, so they carry on); a downgrade waits for the end of the billing
 * period; during a trial either applies at once (nothing is paid for yet). Asking for the
 * plan the tenant is on drops a scheduled downgrade, else changes nothing (200). A change
 * made meanwhile by another request is a 409: of concurrent changes, one wins.
 */
export async function changePlan(
  store: TenantAdminStore,
  tenantId: string,
  tier: string,
  nowMs: number,
  record?: SettlementRecorder,
): Promise<BillingResult> {
  const tenant = await settledTenant(store, tenantId, nowMs, record)
  const { subscription } = tenant
  const view = billingView(tenant, nowMs)
  if (DEFAULT_TIERS[tenant.tier] === 'custom' || tenant.limits != null)
    throw new SaikuHttpError(
      'forbidden',
      'This tenant has custom limits agreed with sales: contact sales to change plan.',
    )
  if (view.status !== 'active' && view.status !== 'trialing') {
    throw new SaikuHttpError(
      'payment_required',
      `Changing plan requires an active subscription or trial; this subscription is ${view.status}.`,
    )
  }
  if (subscription.cancelAtPeriodEnd === true) {
    throw new SaikuHttpError(
      'conflict',
      `This subscription ends on ${endsOn(subscription.scheduledChangeAt)}: undo the cancellation (DELETE /me/billing/cancel) before changing plan.`,
    )
  }
  const unchanged = (): BillingResult => ({ status: 200, body: view })
  let next: Subscription
  let plan: PlanChange | undefined
  let activity: BillingActivity
  if (tier === tenant.tier) {
    if (subscription.scheduledTier == null) return unchanged()
    next = unscheduled(subscription)
    activity = { action: 'plan.change_dropped', target: subscription.scheduledTier }
  } else if (subscription.status === 'trialing' || isUpgrade(tenant.tier, tier)) {
    // Payment provider: charge the prorated difference here (an upgrade); a trial pays nothing yet.
    next = unscheduled(subscription)
    plan = { expectedTier: tenant.tier, tier }
    activity = { action: 'plan.changed', target: tier }
  } else {
    if (subscription.scheduledTier === tier) return unchanged()
    // Payment provider: the next invoice is at the new plan's price.
    const periodEnd = billingPeriodAt(subscription.billingAnchor, nowMs).endMs
    next = { ...unscheduled(subscription), scheduledTier: tier, scheduledChangeAt: new Date(periodEnd) }
    activity = { action: 'plan.change_scheduled', target: tier }
  }
  if (!(await write(store, tenant, next, plan))) throw lostRace()
  const written: TenantRecord = { ...tenant, tier: plan?.tier ?? tenant.tier, subscription: next }
  return { status: 200, body: billingView(written, nowMs), activity }
}

/** POST /me/billing/cancel: an active subscription ends (becomes `canceled`) at the end of its billing period. */
export async function cancelAtPeriodEnd(
  store: TenantAdminStore,
  tenantId: string,
  nowMs: number,
  record?: SettlementRecorder,
): Promise<BillingResult> {
  const tenant = await settledTenant(store, tenantId, nowMs, record)
  const { subscription } = tenant
  const view = billingView(tenant, nowMs)
  if (subscription.status === 'trialing' && view.status === 'trialing')
    throw new SaikuHttpError(
      'conflict',
      `A trial ends by itself on ${endsOn(subscription.trialEndsAt)}: nothing to cancel.`,
    )
  if (subscription.status !== 'active')
    throw new SaikuHttpError('conflict', `There is no active subscription to cancel: this one is ${view.status}.`)
  if (subscription.cancelAtPeriodEnd === true) return { status: 200, body: view }
  // Payment provider: stop the renewal here.
  const periodEnd = billingPeriodAt(subscription.billingAnchor, nowMs).endMs
  const next = { ...unscheduled(subscription), cancelAtPeriodEnd: true, scheduledChangeAt: new Date(periodEnd) }
  if (!(await write(store, tenant, next))) throw lostRace()
  return {
    status: 200,
    body: billingView({ ...tenant, subscription: next }, nowMs),
    activity: { action: 'subscription.cancel_scheduled', target: new Date(periodEnd).toISOString() },
  }
}

/** DELETE /me/billing/cancel: the cancellation is undone while its period has not ended. */
export async function undoCancel(
  store: TenantAdminStore,
  tenantId: string,
  nowMs: number,
  record?: SettlementRecorder,
): Promise<BillingResult> {
  const tenant = await settledTenant(store, tenantId, nowMs, record)
  const { subscription } = tenant
  const view = billingView(tenant, nowMs)
  if (subscription.status !== 'active')
    throw new SaikuHttpError('conflict', `There is no cancellation to undo: this subscription is ${view.status}.`)
  if (subscription.cancelAtPeriodEnd !== true) return { status: 200, body: view }
  // Payment provider: resume the renewal here.
  const next = unscheduled(subscription)
  if (!(await write(store, tenant, next))) throw lostRace()
  return {
    status: 200,
    body: billingView({ ...tenant, subscription: next }, nowMs),
    activity: { action: 'subscription.cancel_undone', target: null },
  }
}
