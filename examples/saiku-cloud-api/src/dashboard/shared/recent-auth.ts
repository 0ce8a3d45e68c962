import type { Request, RequestHandler, Response } from 'express'
import type { DashboardContext } from './context.js'
import { MAX_PASSWORD_LENGTH, verifyPassword } from './passwords.js'
import { hourSpentMessage, recordCodeThrottled, useSecondFactor } from './second-factor.js'

// Re-authentication before sensitive actions ("sudo mode"): the action runs only when this session checked
// the member's password (and code, with two-factor on) in the last RECENT_AUTH_MS. Otherwise the page asks
// for them, then carries on with the request it stopped: a form's fields go back as hidden fields of the
// confirmation, which posts to the same address, so nothing typed is lost; a page asked for by GET is
// opened again. A check passed here is reused by later actions until it is RECENT_AUTH_MS old.
//
// Use: after `form, verified` (the body is read and its CSRF token checked),
//   router.post('/members', ...page, form, verified, adminOnly, ctx.requireRecentAuth, handler)
// or, when only some requests need it (a live key, not a test one), inside the handler:
//   if (!(await ctx.confirmRecentAuth(req, res))) return   // the confirmation page was sent

/** How long a password (and code) check lets sensitive actions through. */
export const RECENT_AUTH_MS = 10 * 60_000

/** Fields of the confirmation itself, never passed on to the action. */
const PASSWORD_FIELD = '_reauth_password'
const CODE_FIELD = '_reauth_code'

export interface RecentAuth {
  /** Middleware: lets the request through when the session's last check is recent, else asks for one. */
  readonly requireRecentAuth: RequestHandler
  /** True when the request may go on; false when the confirmation page (or a refusal) was sent instead. */
  readonly confirmRecentAuth: (req: Request, res: Response) => Promise<boolean>
}

export function createRecentAuth(ctx: DashboardContext): RecentAuth {
  const { dashboard, clock, render, passwordGate, codeThrottle, logger } = ctx

  const isRecent = (req: Request): boolean => {
    const verifiedAt = req.dashboard!.session.verifiedAt
    return verifiedAt != null && clock() - verifiedAt.getTime() < RECENT_AUTH_MS
  }

  /** The confirmation: a GET goes on at /confirm-access, a form goes back to where it was sent. */
  function ask(req: Request, res: Response, status: number, error: string | null): void {
    const isForm = req.method === 'POST'
    const body = (isForm ? req.body : {}) as Record<string, unknown>
    const hidden: { name: string; value: string }[] = []
    for (const [name, value] of Object.entries(body)) {
      if (name === PASSWORD_FIELD || name === CODE_FIELD || name === '_csrf') continue
      for (const item of Array.isArray(value) ? value : [value])
        if (typeof item === 'string') hidden.push({ name, value: item })
    }
    const action = isForm ? req.originalUrl : `/confirm-access?next=${encodeURIComponent(req.originalUrl)}`
    render(res, status, 'confirm-access', {
      title: 'Confirm access',
      action,
      hidden,
      error,
      needsCode: (req.dashboard!.member.totpSecret ?? null) !== null,
    })
  }

  async function confirmRecentAuth(req: Request, res: Response): Promise<boolean> {
    const signed = req.dashboard!
    if (isRecent(req)) return true
    const body = (req.method === 'POST' ? req.body : undefined) as Record<string, unknown> | undefined
    if (body === undefined || !(PASSWORD_FIELD in body)) {
      ask(req, res, 200, null)
      return false
    }
    const password = typeof body[PASSWORD_FIELD] === 'string' ? body[PASSWORD_FIELD] : ''
    const code = body[CODE_FIELD]
    delete body[PASSWORD_FIELD]
    delete body[CODE_FIELD]
    const { member } = signed
    // Charged to the account's code budget before anything is checked, like a sign-in's code.
    const verdict = codeThrottle.reserve(member.memberId, null)
    if (!verdict.admitted) {
      res.setHeader('retry-after', String(Math.max(1, Math.ceil(verdict.retryAfterMs / 1000))))
      await recordCodeThrottled(ctx, req, member, 're-authentication')
      ask(req, res, 429, hourSpentMessage(verdict.retryAfterMs))
      return false
    }
    const checked = passwordGate.run(async () =>
      password.length > 0 && password.length <= MAX_PASSWORD_LENGTH
        ? verifyPassword(password, member.passwordHash)
        : false,
    )
    if (checked === null) {
      codeThrottle.settle(verdict.reservation, 'success') // not checked: nothing spent
      res.setHeader('retry-after', '2')
      ask(req, res, 503, 'The server is busy checking passwords. Try again in a few seconds.')
      return false
    }
    let ok = (await checked).value
    if (ok && (member.totpSecret ?? null) !== null) ok = (await useSecondFactor(ctx, member, code)) !== null
    if (!ok) {
      codeThrottle.settle(verdict.reservation, 'failure')
      await dashboard.recordActivity({
        tenantId: member.tenantId,
        actorType: 'member',
        actor: member.email,
        action: 'reauth.refused',
        ip: req.ip ?? null,
      })
      logger.info({ msg: 're-authentication refused', memberId: member.memberId, ip: req.ip })
      const wrong = (member.totpSecret ?? null) !== null ? 'Incorrect password or code.' : 'Incorrect password.'
      ask(req, res, 401, wrong)
      return false
    }
    codeThrottle.settle(verdict.reservation, 'success')
    const nowMs = clock()
    await dashboard.setVerifiedAt(signed.session.sessionDigest, new Date(nowMs))
    req.dashboard = { ...signed, session: { ...signed.session, verifiedAt: new Date(nowMs) } }
    return true
  }

  return {
    confirmRecentAuth,
    requireRecentAuth: (req, res, next) => {
      confirmRecentAuth(req, res).then((ok) => (ok ? next() : undefined), next)
    },
  }
}
