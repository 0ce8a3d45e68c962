import type { Request, Response, Router } from 'express'
import { DEFAULT_TIERS, SaikuHttpError } from '@saiku/core'
import { getBilling, startTrial } from '../../api.js'
import {
  cancelAtPeriodEnd,
  changePlan,
  isUpgrade,
  SELF_SERVICE_TIERS,
  undoCancel,
  type BillingResult,
  type BillingView,
} from '../../billing.js'
import type { DashboardContext } from '../shared/context.js'
import { form } from '../shared/forms.js'
import { actor, asPrincipal } from '../shared/roles.js'
import { recordSettlement } from './activity.js'
import { takeFlash } from '../shared/session.js'

const TIER_NAMES: Record<string, string> = { starter: 'Starter', team: 'Team', business: 'Business' }
const tierName = (tier: string): string => TIER_NAMES[tier] ?? tier
const day = (iso: string): string => iso.slice(0, 10)

/** The plans the page offers besides the current one: each an upgrade now, or a downgrade at the period's end. */
function planChoices(billing: BillingView) {
  const now = billing.status === 'trialing' || billing.status === 'active'
  if (!now || billing.cancelAtPeriodEnd) return []
  return SELF_SERVICE_TIERS.filter((tier) => tier !== billing.tier && tier !== billing.scheduledTier).map((tier) => {
    const limits = DEFAULT_TIERS[tier]
    const atOnce = billing.status === 'trialing' || isUpgrade(billing.tier, tier)
    return {
      tier,
      limits:
        limits === undefined || limits === 'custom'
          ? ''
          : `${limits.perMinute}/min, ${limits.perHour.toLocaleString('en')}/h`,
      button: atOnce
        ? `${isUpgrade(billing.tier, tier) ? 'Upgrade' : 'Change'} to ${tierName(tier)} now`
        : `Downgrade to ${tierName(tier)} on ${day(billing.currentPeriodEnd)}`,
    }
  })
}

/** What the page says after a change. */
function noticeOf(result: BillingResult): string {
  const view = result.body
  switch (result.activity?.action) {
    case undefined:
      return 'Nothing to change.'
    case 'plan.changed':
      return `Your plan is now ${tierName(view.tier)}: its limits apply from the next request.`
    case 'plan.change_scheduled':
      return `Your plan changes to ${tierName(view.scheduledTier ?? '')} on ${day(view.scheduledChangeAt ?? '')}.`
    case 'plan.change_dropped':
      return `You stay on ${tierName(view.tier)}: the scheduled change is dropped.`
    case 'subscription.cancel_scheduled':
      return `Your subscription ends on ${day(view.scheduledChangeAt ?? '')}.`
    default:
      return 'Your subscription continues: the cancellation is undone.'
  }
}

/** The subscription's state, the trial, the plan and the cancellation: the JSON API's own handlers behind a page. */
export function registerBilling(router: Router, ctx: DashboardContext): void {
  const { store, dashboard, logger, page, signedIn, verified, adminOnly, render, errorPage } = ctx
  // A change whose period has ended, applied by this page's read, is recorded as the API's are.
  const settled = recordSettlement(dashboard, logger)

  router.get('/billing', ...page, signedIn, (req, res, next) => {
    ;(async () => {
      const result = await getBilling(store, asPrincipal(req.dashboard!.tenant), Date.now(), settled)
      const billing = result.body as BillingView
      render(res, 200, 'billing', {
        title: 'Billing',
        billing: {
          ...billing,
          trialEndsAt: billing.trialEndsAt === null ? null : new Date(billing.trialEndsAt),
          tierName: tierName(billing.tier),
          scheduledTierName: billing.scheduledTier === null ? null : tierName(billing.scheduledTier),
          periodStartDay: day(billing.currentPeriodStart),
          periodEndDay: day(billing.currentPeriodEnd),
          anchorDay: billing.billingAnchor === null ? null : day(billing.billingAnchor),
          changeDay: billing.scheduledChangeAt === null ? null : day(billing.scheduledChangeAt),
        },
        choices: planChoices(billing),
        notice: await takeFlash(dashboard, req),
      })
    })().catch(next)
  })

  router.post('/billing/trial', ...page, form, verified, adminOnly, (req, res, next) => {
    const { tenant } = req.dashboard!
    startTrial(store, asPrincipal(tenant), Date.now(), settled).then(
      async () => {
        await dashboard.recordActivity({ tenantId: tenant.tenantId, ...actor(req), action: 'trial.started' })
        await dashboard.setFlash(req.dashboard!.session.sessionDigest, 'Your 14-day trial has started.')
        res.redirect(303, '/billing')
      },
      (error: unknown) => {
        if (error instanceof SaikuHttpError && error.wireCode === 'conflict')
          return errorPage(res, 409, 'Trial not available', error.message)
        next(error)
      },
    )
  })

  /** Runs a billing change for the signed-in tenant, records it, and goes back to the page with what happened. */
  const change =
    (title: string, run: (req: Request, tenantId: string) => Promise<BillingResult>) =>
    (req: Request, res: Response, next: (error: unknown) => void) => {
      const { tenant } = req.dashboard!
      // Async, so a refusal thrown before any await is the same rejection as one after.
      ;(async () => run(req, tenant.tenantId))().then(
        async (result) => {
          if (result.activity !== undefined)
            await dashboard.recordActivity({
              tenantId: tenant.tenantId,
              ...actor(req),
              action: result.activity.action,
              target: result.activity.target,
            })
          await dashboard.setFlash(req.dashboard!.session.sessionDigest, noticeOf(result))
          res.redirect(303, '/billing')
        },
        (error: unknown) => {
          // The API's refusals (unknown plan, enterprise, no subscription, a pending cancellation) as a page.
          if (error instanceof SaikuHttpError && error.status < 500)
            return errorPage(res, error.status, title, error.message)
          next(error)
        },
      )
    }
  router.post(
    '/billing/plan',
    ...page,
    form,
    verified,
    adminOnly,
    change('Plan not changed', (req, tenantId) => {
      const tier = (req.body as Record<string, unknown>).tier
      if (typeof tier !== 'string' || !SELF_SERVICE_TIERS.includes(tier))
        throw new SaikuHttpError('invalid_request', `Choose one of ${SELF_SERVICE_TIERS.map(tierName).join(', ')}.`)
      return changePlan(store, tenantId, tier, Date.now(), settled)
    }),
  )
  router.post(
    '/billing/cancel',
    ...page,
    form,
    verified,
    adminOnly,
    change('Not canceled', (_req, tenantId) => cancelAtPeriodEnd(store, tenantId, Date.now(), settled)),
  )
  router.post(
    '/billing/resume',
    ...page,
    form,
    verified,
    adminOnly,
    change('Not resumed', (_req, tenantId) => undoCancel(store, tenantId, Date.now(), settled)),
  )
  // A reload or Enter in the address bar on a form's URL asks for it by GET: back to the page the form is on.
  for (const path of ['/billing/trial', '/billing/plan', '/billing/cancel', '/billing/resume'])
    router.get(path, ...page, signedIn, (_req, res) => res.redirect(303, '/billing'))
}
