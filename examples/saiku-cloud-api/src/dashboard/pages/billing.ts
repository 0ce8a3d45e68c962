import type { Router } from 'express'
import { SaikuHttpError } from '@saiku/core'
import { getBilling, startTrial } from '../../api.js'
import type { DashboardContext } from '../shared/context.js'
import { form } from '../shared/forms.js'
import { actor, asPrincipal } from '../shared/roles.js'
import { takeFlash } from '../shared/session.js'

/** The subscription's state, and the trial an admin can start: the JSON API's own handlers behind a page. */
export function registerBilling(router: Router, ctx: DashboardContext): void {
  const { store, dashboard, page, signedIn, verified, adminOnly, render, errorPage } = ctx

  router.get('/billing', ...page, signedIn, (req, res, next) => {
    ;(async () => {
      const result = await getBilling(store, asPrincipal(req.dashboard!.tenant))
      const billing = result.body as { status: string; trialEndsAt: string | null; trialAvailable: boolean }
      render(res, 200, 'billing', {
        title: 'Billing',
        billing: { ...billing, trialEndsAt: billing.trialEndsAt === null ? null : new Date(billing.trialEndsAt) },
        notice: await takeFlash(dashboard, req),
      })
    })().catch(next)
  })

  router.post('/billing/trial', ...page, form, verified, adminOnly, (req, res, next) => {
    const { tenant } = req.dashboard!
    startTrial(store, asPrincipal(tenant)).then(
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
  // A reload or Enter in the address bar on the form's URL asks for it by GET: back to the page the form is on.
  router.get('/billing/trial', ...page, signedIn, (_req, res) => res.redirect(303, '/billing'))
}
