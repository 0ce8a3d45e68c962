import type { Router } from 'express'
import type { TenantUsage } from '@saiku/core'
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
      // The quotas' resets are shown as a time: when the counts were read plus their wait.
      render(res, 200, 'usage', { title: 'Usage', usage, unavailable, readAtMs: Date.now(), keys: keyRows(byLastUse) })
    })().catch(next)
  })
}
