import { fileURLToPath } from 'node:url'
import express from 'express'
import { registerAccount } from './pages/account.js'
import { registerActivity } from './pages/activity.js'
import { registerApiKeys } from './pages/api-keys.js'
import { registerBilling } from './pages/billing.js'
import { registerFallback } from './pages/fallback.js'
import { registerMembers } from './pages/members.js'
import { registerOverview } from './pages/overview.js'
import { registerSignIn } from './pages/sign-in.js'
import { createEnrolment, registerTwoFactor } from './pages/two-factor.js'
import { registerUsage } from './pages/usage.js'
import { registerWebhooks } from './pages/webhooks.js'
import { createContext, type DashboardOptions } from './shared/context.js'
import { sweepExpiredSessions } from './shared/session.js'

// The dashboard: one module a page or flow in pages/, what every page shares in shared/, its tables in
// store/. Imports go one way: pages/ → members.ts (the member rules the CLI uses too) → shared/ → store/.

export type { DashboardOptions } from './shared/context.js'
export { recordApiAction, recordSettlement } from './pages/activity.js'
export { openDashboardStore } from './store/index.js'
export { readDashboardSettings } from './settings.js'
export { loadDashboardKey } from './shared/sign-in-cookies.js'
export { RECENT_AUTH_MS, type RecentAuth } from './shared/recent-auth.js'

// Beside this module in src/, and beside the bundle in dist/ (see tsdown.config.ts).
const VIEWS = fileURLToPath(new URL('./views/', import.meta.url))
const ASSETS = fileURLToPath(new URL('./assets/', import.meta.url))

/** The pages of the spec's dashboard, mounted in front of the JSON API. */
export function createDashboard(options: DashboardOptions): express.Router {
  const ctx = createContext(options, VIEWS)
  sweepExpiredSessions(ctx.dashboard, ctx.settings, ctx.logger)

  const router = express.Router()
  registerSignIn(router, ctx)
  const enrolment = createEnrolment(ctx)
  registerTwoFactor(router, ctx, enrolment)
  registerAccount(router, ctx, enrolment)
  registerOverview(router, ctx)
  registerApiKeys(router, ctx)
  registerUsage(router, ctx)
  registerBilling(router, ctx)
  registerMembers(router, ctx)
  registerActivity(router, ctx)
  if (options.webhooks !== undefined) registerWebhooks(router, ctx, options.webhooks)
  registerFallback(router, ctx, ASSETS)
  return router
}
