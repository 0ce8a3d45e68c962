import type { Router } from 'express'
import type { TenantUsage, WindowUsage } from '@saiku/core'
import type { DashboardContext } from '../shared/context.js'
import { keyRows } from '../shared/render.js'

/** The tenant's counts in the current windows, and its keys by last use. */
export function registerUsage(router: Router, ctx: DashboardContext): void {
  const { authenticator, logger, page, signedIn, render } = ctx
  const keys = authenticator.keys

  router.get('/usage', ...page, signedIn, (req, res, next) => {
    const { tenant } = req.dashboard!
    ;(async () => {
      let usage: TenantUsage | null = null
      let unavailable = false
      try {
        usage = await authenticator.usage(tenant.tenantId)
      } catch (error) {
        unavailable = true
        logger.error({ msg: 'usage read failed', err: { message: (error as Error).message } })
      }
      const byLastUse = (await keys.list(tenant.tenantId)).sort(
        (a, b) => (b.lastUsedAt?.getTime() ?? 0) - (a.lastUsedAt?.getTime() ?? 0),
      )
      // A quota resets at a calendar instant (a whole minute in UTC): its date, not a countdown.
      const readAt = Date.now()
      const resetsAt = (w: WindowUsage): string =>
        new Date(Math.round((readAt + w.resetSeconds * 1000) / 60_000) * 60_000).toISOString()
      render(res, 200, 'usage', { title: 'Usage', usage, unavailable, resetsAt, keys: keyRows(byLastUse) })
    })().catch(next)
  })
}
