import type { Request, Response } from 'express'
import type { Member, SessionStage } from '../store/index.js'
import type { DashboardContext } from './context.js'
import { newToken, sessionDigest } from './secrets.js'
import { createSignInCookies, DEVICE_COOKIE_MAX_AGE_SECONDS } from './sign-in-cookies.js'

// How a sign-in becomes a session, shared by the password step and the second step (code or enrolment).

/** A User-Agent as the sessions list keeps it: bounded, printable. */
const userAgentOf = (req: Request): string | null => {
  const value = req.get('user-agent')
  return value === undefined || value === '' ? null : value.replace(/[^\x20-\x7e]/g, '?').slice(0, 300)
}

/**
 * Starts a session at `stage` under a new ID (any session the browser had is ended), its password checked at
 * `verifiedAtMs` on the dashboard's clock. Resolves to the new session's digest.
 */
export async function startSession(
  ctx: DashboardContext,
  req: Request,
  res: Response,
  member: Member,
  stage: SessionStage,
  verifiedAtMs: number,
): Promise<string> {
  const previous = ctx.readCookie(req, 'saiku_session')
  if (previous !== undefined && previous.length <= 100) await ctx.dashboard.deleteSession(sessionDigest(previous))
  const id = newToken()
  const now = new Date()
  await ctx.dashboard.createSession({
    sessionDigest: sessionDigest(id),
    memberId: member.memberId,
    csrfToken: newToken(),
    createdAt: now,
    lastSeenAt: now,
    stage,
    verifiedAt: new Date(verifiedAtMs),
    userAgent: userAgentOf(req),
    ip: req.ip ?? null,
  })
  ctx.setCookie(req, res, 'saiku_session', id, ctx.settings.absoluteTimeoutSeconds)
  return sessionDigest(id)
}

/** What a complete sign-in adds: the Activity line, and the device cookie that the password budgets trust. */
export async function completeSignIn(
  ctx: DashboardContext,
  req: Request,
  res: Response,
  member: Member,
  how: string | null,
): Promise<void> {
  await ctx.dashboard.recordActivity({
    tenantId: member.tenantId,
    actorType: 'member',
    actor: member.email,
    action: 'sign_in',
    target: how,
    ip: req.ip ?? null,
  })
  // Set only once every step passed: a password alone earns no trust.
  const cookies = createSignInCookies(ctx.key)
  ctx.setCookie(
    req,
    res,
    'saiku_device',
    cookies.rememberDevice(ctx.readCookie(req, 'saiku_device'), member.email),
    DEVICE_COOKIE_MAX_AGE_SECONDS,
  )
}
