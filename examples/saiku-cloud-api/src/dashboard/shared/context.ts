import { randomBytes } from 'node:crypto'
import type { RequestHandler } from 'express'
import type { Logger } from 'pino'
import type { Authenticator, TenantAdminStore } from '@saiku/core'
import type { DashboardSettings } from '../settings.js'
import type { DashboardStore } from '../store/index.js'
import { CodeThrottle } from './code-throttle.js'
import type { EndpointStore } from '../../webhooks/endpoints.js'
import { createCsrf, type Csrf } from './csrf.js'
import { PasswordGate, passwordCheckConcurrency } from './password-gate.js'
import { createRecentAuth, type RecentAuth } from './recent-auth.js'
import { createRenderer, type Renderer } from './render.js'
import { createAdminOnly } from './roles.js'
import { noStore, securityHeaders } from './security.js'
import { createSessions, type Sessions } from './session.js'
import { createSite, type Site } from './site.js'
import { createTwoFactorCrypto, type TwoFactorCrypto } from './two-factor.js'

/** Password checks waiting for a place, per place: a short queue, then 503. */
const PASSWORD_QUEUE_PER_PLACE = 2

export interface DashboardOptions {
  readonly store: TenantAdminStore
  readonly dashboard: DashboardStore
  /** The API's authenticator: its key manager and its limiter, so keys and counts are the same ones. */
  readonly authenticator: Authenticator
  readonly logger: Logger
  readonly settings: DashboardSettings
  /**
   * Signs the sign-in form's tokens and the device cookies (see sign-in-cookies.ts); every
   * process behind one address needs the same. Default: a random key, forgotten at exit.
   */
  readonly key?: Buffer
  /** The clock of the sign-in budgets and forms. Default `Date.now`. */
  readonly now?: () => number
  /** The tenant's webhook endpoints: the Webhooks page. Without it the page is a 404. */
  readonly webhooks?: EndpointStore
}

/** What every page is given: the stores, the settings, and the pieces each page's routes are made of. */
export interface DashboardContext
  extends
    Pick<DashboardOptions, 'store' | 'dashboard' | 'authenticator' | 'logger' | 'settings'>,
    Site,
    Renderer,
    Sessions,
    Csrf,
    RecentAuth {
  /** Signs the sign-in form's tokens and the device cookies. */
  readonly key: Buffer
  /** The clock of the sign-in budgets and forms. */
  readonly clock: () => number
  /** What every page runs first: the security headers, no-store, and the session lookup. */
  readonly page: readonly RequestHandler[]
  /** Lets an admin through; a viewer gets a page saying what their role allows. */
  readonly adminOnly: RequestHandler
  /** The one bound on password checks (scrypt), shared by sign-in, re-authentication and password changes. */
  readonly passwordGate: PasswordGate
  /** The per-account budget of one-time codes and re-authentication checks. */
  readonly codeThrottle: CodeThrottle
  /** Seals and opens TOTP secrets with the dashboard key. */
  readonly twoFactor: TwoFactorCrypto
}

export function createContext(options: DashboardOptions, views: string): DashboardContext {
  const { store, dashboard, authenticator, logger, settings } = options
  const key = options.key ?? randomBytes(32)
  const site = createSite(settings.publicOrigin)
  const renderer = createRenderer(views)
  const clock = options.now ?? Date.now
  const sessions = createSessions({ store, dashboard, settings, site, clock })
  const csrf = createCsrf({
    settings,
    logger,
    site,
    errorPage: renderer.errorPage,
    signInUrl: sessions.signInUrl,
  })
  const ctx: Omit<DashboardContext, keyof RecentAuth> = {
    store,
    dashboard,
    authenticator,
    logger,
    settings,
    ...site,
    ...renderer,
    ...sessions,
    ...csrf,
    key,
    clock,
    page: [securityHeaders, noStore, sessions.session],
    adminOnly: createAdminOnly(renderer.errorPage),
    passwordGate: new PasswordGate({
      concurrency: passwordCheckConcurrency(),
      queueLength: passwordCheckConcurrency() * PASSWORD_QUEUE_PER_PLACE,
    }),
    codeThrottle: new CodeThrottle({ now: clock }),
    twoFactor: createTwoFactorCrypto(key),
  }
  const full = ctx as DashboardContext
  return Object.assign(full, createRecentAuth(full))
}
