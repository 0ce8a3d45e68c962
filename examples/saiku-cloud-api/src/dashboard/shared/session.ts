import type { Request, RequestHandler, Response } from 'express'
import type { Logger } from 'pino'
import type { TenantAdminStore, TenantRecord } from '@saiku/core'
import type { DashboardSettings } from '../settings.js'
import type { DashboardStore, Member, SessionRecord } from '../store/index.js'
import { safeNext } from './redirects.js'
import { sessionDigest } from './secrets.js'
import type { Site } from './site.js'

/** Who is signed in, for one request. */
export interface Signed {
  readonly session: SessionRecord
  readonly member: Member
  readonly tenant: TenantRecord
}

/** A sign-in whose password was right and that waits for a second step: a one-time code, or an enrolment. */
export interface PendingSignIn extends Signed {
  readonly stage: 'code' | 'enrol'
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The signed-in member of a dashboard request. */
      dashboard?: Signed
      /** A sign-in half done: set instead of `dashboard`, which stays unset until the second step. */
      pendingSignIn?: PendingSignIn
    }
  }
}

/** How long a sign-in may wait at its second step (the code, or an enrolment) after its password check. */
export const PENDING_SIGN_IN_MS = 10 * 60_000

export interface Sessions {
  /** Loads the session from its cookie; ends it when it is past a timeout. Sets req.dashboard. */
  readonly session: RequestHandler
  /** Lets a signed-in request through; sends any other to the sign-in page. */
  readonly signedIn: RequestHandler
  /** The sign-in page, saying why, and for a page asked for by GET the way back to it after sign-in. */
  readonly signInUrl: (req: Request, res: Response) => string
}

const timeouts = (settings: DashboardSettings) => ({
  idleMs: settings.idleTimeoutSeconds * 1000,
  absoluteMs: settings.absoluteTimeoutSeconds * 1000,
})

export function createSessions(deps: {
  readonly store: TenantAdminStore
  readonly dashboard: DashboardStore
  readonly settings: DashboardSettings
  readonly site: Site
  /** The clock of re-authentication and of the second step's wait. */
  readonly clock: () => number
}): Sessions {
  const { store, dashboard, site, clock } = deps
  const { idleMs, absoluteMs } = timeouts(deps.settings)
  // lastSeenAt is written at most this often per session.
  const touchEveryMs = Math.min(60_000, Math.floor(idleMs / 10))

  function clearSession(req: Request, res: Response, expired: boolean): void {
    site.setCookie(req, res, 'saiku_session', '', 0)
    if (expired) res.locals.sessionExpired = true
  }

  const session: RequestHandler = (req, res, next) => {
    const id = site.readCookie(req, 'saiku_session')
    if (id === undefined || id.length > 100) return next()
    const key = sessionDigest(id)
    ;(async () => {
      const found = await dashboard.findSession(key)
      const now = Date.now()
      if (found === null) return clearSession(req, res, false)
      if (now - found.lastSeenAt.getTime() >= idleMs || now - found.createdAt.getTime() >= absoluteMs) {
        await dashboard.deleteSession(key)
        return clearSession(req, res, true)
      }
      const member = await dashboard.findMember(found.memberId)
      const tenant = member === null ? null : await store.findTenant(member.tenantId)
      if (member === null || tenant === null) {
        await dashboard.deleteSession(key)
        return clearSession(req, res, false)
      }
      const stage = found.stage ?? 'full'
      if (stage !== 'full') {
        // A second step not taken in time: the sign-in starts again from the password.
        if (found.verifiedAt == null || clock() - found.verifiedAt.getTime() >= PENDING_SIGN_IN_MS) {
          await dashboard.deleteSession(key)
          return clearSession(req, res, true)
        }
        req.pendingSignIn = { session: found, member, tenant, stage }
        return
      }
      if (now - found.lastSeenAt.getTime() >= touchEveryMs) await dashboard.touchSession(key, new Date(now))
      // A tenant that requires two-factor sends a member without it to set it up before any page. The set-up
      // asks for no password, so it waits no longer after the last one than a sign-in's second step does.
      if ((member.totpSecret ?? null) === null && (await dashboard.requiresTwoFactor(tenant.tenantId))) {
        if (found.verifiedAt == null || clock() - found.verifiedAt.getTime() >= PENDING_SIGN_IN_MS) {
          await dashboard.deleteSession(key)
          return clearSession(req, res, true)
        }
        req.pendingSignIn = { session: found, member, tenant, stage: 'enrol' }
        return
      }
      req.dashboard = { session: found, member, tenant }
    })().then(() => next(), next)
  }

  const signInUrl = (req: Request, res: Response): string => {
    const query = new URLSearchParams()
    if (res.locals.sessionExpired === true) query.set('expired', '1')
    const back = req.method === 'GET' || req.method === 'HEAD' ? safeNext(req.originalUrl) : null
    if (back !== null && back !== '/') query.set('next', back)
    return query.size === 0 ? '/sign-in' : `/sign-in?${query.toString()}`
  }

  const signedIn: RequestHandler = (req, res, next) => {
    if (req.dashboard !== undefined) return next()
    const pending = req.pendingSignIn
    if (pending !== undefined)
      return res.redirect(303, pending.stage === 'code' ? '/sign-in/code' : '/sign-in/two-factor')
    res.redirect(303, signInUrl(req, res))
  }

  return { session, signedIn, signInUrl }
}

/** Deletes the sessions past a timeout every ten minutes, so that abandoned ones do not pile up. */
export function sweepExpiredSessions(dashboard: DashboardStore, settings: DashboardSettings, logger: Logger): void {
  const { idleMs, absoluteMs } = timeouts(settings)
  const sweep = setInterval(() => {
    const now = Date.now()
    dashboard.deleteExpiredSessions(new Date(now - idleMs), new Date(now - absoluteMs)).catch((error: unknown) => {
      logger.error({ msg: 'session sweep failed', err: { message: (error as Error).message } })
    })
  }, 600_000)
  sweep.unref()
}

/** The session's notice, shown by one page only: a reload, or a link with any query, shows none. */
export async function takeFlash(dashboard: DashboardStore, req: Request): Promise<string | null> {
  const { session: current } = req.dashboard!
  const message = current.flash ?? null
  if (message === null) return null
  return (await dashboard.takeFlash(current.sessionDigest, message)) ? message : null
}
