import type { Router } from 'express'
import { limitsForTenant, type WindowLimits } from '@saiku/core'
import type { DashboardContext } from '../shared/context.js'

/** The tenant at a glance: its tier and limits, and how to call the API. */
export function registerOverview(router: Router, ctx: DashboardContext): void {
  const { authenticator, page, signedIn, render, originOf } = ctx

  router.get('/', ...page, signedIn, (req, res) => {
    const { tenant } = req.dashboard!
    let limits: WindowLimits | null = null
    try {
      limits = limitsForTenant(authenticator.options.tiers, tenant)
    } catch {
      // A tenant the tier table cannot serve: the page says so instead of numbers.
    }
    render(res, 200, 'overview', {
      title: 'Overview',
      view: {
        tenantId: tenant.tenantId,
        tenantSlug: tenant.tenantSlug,
        tier: tenant.tier,
        connectionName: tenant.connectionName,
      },
      limits,
      origin: originOf(req),
    })
  })
}
