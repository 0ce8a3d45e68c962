import type { Router } from 'express'
import type { TenantUsage, UsageHistory, WindowUsage } from '@saiku/core'
import type { DashboardContext } from '../shared/context.js'
import { keyRows } from '../shared/render.js'
import {
  isUsageRange,
  pointLabel,
  rangeQuery,
  refusals,
  usageChartSvg,
  usageCsv,
  USAGE_RANGES,
  type UsageRange,
} from '../shared/usage-chart.js'

/** The tenant's counts in the current windows, its requests over time, and its keys by last use. */
export function registerUsage(router: Router, ctx: DashboardContext): void {
  const { authenticator, logger, page, signedIn, render, errorPage, clock } = ctx
  const keys = authenticator.keys

  /** `?range=`: 24h, 7d (default) or 30d; anything else is null. */
  const rangeOf = (value: unknown): UsageRange | null =>
    value === undefined ? '7d' : isUsageRange(value) ? value : null

  async function historyOf(tenantId: string, range: UsageRange): Promise<UsageHistory | null> {
    try {
      return await authenticator.usageHistory(tenantId, rangeQuery(range, clock()))
    } catch (error) {
      logger.error({ msg: 'usage history read failed', err: { message: (error as Error).message } })
      return null
    }
  }

  router.get('/usage', ...page, signedIn, (req, res, next) => {
    const { tenant } = req.dashboard!
    const range = rangeOf(req.query.range)
    if (range === null) {
      errorPage(res, 400, 'Unknown range', 'Choose the last 24 hours, 7 days or 30 days.')
      return
    }
    ;(async () => {
      let usage: TenantUsage | null = null
      let unavailable = false
      try {
        usage = await authenticator.usage(tenant.tenantId)
      } catch (error) {
        unavailable = true
        logger.error({ msg: 'usage read failed', err: { message: (error as Error).message } })
      }
      const history = await historyOf(tenant.tenantId, range)
      const listed = await keys.list(tenant.tenantId)
      const byLastUse = [...listed].sort((a, b) => (b.lastUsedAt?.getTime() ?? 0) - (a.lastUsedAt?.getTime() ?? 0))
      // Every live key, and any other key with requests in the range (revoked since): requests, refusals, last use.
      const live = new Map(listed.map((key) => [key.keyId, key]))
      const counted = new Map((history?.keys ?? []).map((key) => [key.keyId, key]))
      const perKey = [
        ...(history?.keys ?? []).map((key) => ({ keyId: key.keyId, counts: key })),
        ...byLastUse.filter((key) => !counted.has(key.keyId)).map((key) => ({ keyId: key.keyId, counts: null })),
      ].map(({ keyId, counts }) => {
        const summary = keyId === null ? undefined : live.get(keyId)
        return {
          keyId,
          label: summary?.label ?? (keyId === null ? 'Without a key ID' : '(revoked key)'),
          requests: counts === null ? 0 : counts.admitted + refusals(counts),
          refused: counts === null ? 0 : refusals(counts),
          lastUsedAt: summary?.lastUsedAt ?? null,
        }
      })
      // A quota resets at a calendar instant (a whole minute in UTC): its date, not a countdown.
      const readAt = Date.now()
      const resetsAt = (w: WindowUsage): string =>
        new Date(Math.round((readAt + w.resetSeconds * 1000) / 60_000) * 60_000).toISOString()
      render(res, 200, 'usage', {
        title: 'Usage',
        usage,
        unavailable,
        resetsAt,
        keys: keyRows(byLastUse),
        range,
        ranges: Object.entries(USAGE_RANGES).map(([value, { label }]) => ({ value, label })),
        history,
        chart: history === null ? null : usageChartSvg(history, 'usage-chart-title'),
        pointLabel: (point: Parameters<typeof pointLabel>[0]) => pointLabel(point, history!.granularity),
        refusals,
        perKey,
      })
    })().catch(next)
  })

  router.get('/usage.csv', ...page, signedIn, (req, res, next) => {
    const { tenant } = req.dashboard!
    const range = rangeOf(req.query.range)
    if (range === null) {
      errorPage(res, 400, 'Unknown range', 'Choose the last 24 hours, 7 days or 30 days.')
      return
    }
    ;(async () => {
      const history = await historyOf(tenant.tenantId, range)
      if (history === null) {
        errorPage(res, 503, 'Usage unavailable', 'Usage over time cannot be read right now. Try again in a moment.')
        return
      }
      const labels = new Map((await keys.list(tenant.tenantId)).map((key) => [key.keyId, key.label]))
      res.setHeader('content-type', 'text/csv; charset=utf-8')
      res.setHeader(
        'content-disposition',
        `attachment; filename="usage-${tenant.tenantSlug}-${range}-${history.from.slice(0, 13)}.csv"`,
      )
      res.status(200).send(usageCsv(history, labels))
    })().catch(next)
  })
}
