import { createHash } from 'node:crypto'
import type { Request, Response, Router } from 'express'
import type { DashboardContext } from '../shared/context.js'
import { form } from '../shared/forms.js'
import { hashPassword, MAX_PASSWORD_LENGTH, passwordProblem, verifyPassword } from '../shared/passwords.js'
import { safeNext } from '../shared/redirects.js'
import { hourSpentMessage, recordCodeThrottled } from '../shared/second-factor.js'
import { takeFlash } from '../shared/session.js'
import { newRecoveryCodes, recoveryDigest } from '../shared/two-factor.js'
import type { SessionRecord } from '../store/index.js'
import type { Enrolment } from './two-factor.js'

/** A session as its row's form names it: a digest of its digest, so the page never shows the store's key. */
const sessionHandle = (session: SessionRecord): string =>
  createHash('sha256').update(`session handle\n${session.sessionDigest}`).digest('base64url').slice(0, 22)

/** "Chrome on Linux": the browser and system a User-Agent names, or what is known of them. */
export function deviceName(userAgent: string | null | undefined): string {
  if (userAgent == null || userAgent === '') return 'Unknown device'
  const browser = /Edg\//.test(userAgent)
    ? 'Edge'
    : /OPR\//.test(userAgent)
      ? 'Opera'
      : /Firefox\//.test(userAgent)
        ? 'Firefox'
        : /HeadlessChrome\//.test(userAgent)
          ? 'Headless Chrome'
          : /(Chrome|Chromium|CriOS)\//.test(userAgent)
            ? 'Chrome'
            : /Safari\//.test(userAgent)
              ? 'Safari'
              : /^curl\//.test(userAgent)
                ? 'curl'
                : 'Unknown browser'
  const system = /Windows/.test(userAgent)
    ? 'Windows'
    : /Android/.test(userAgent)
      ? 'Android'
      : /iPhone|iPad|iPod/.test(userAgent)
        ? 'iOS'
        : /Mac OS X|Macintosh/.test(userAgent)
          ? 'macOS'
          : /CrOS/.test(userAgent)
            ? 'ChromeOS'
            : /Linux/.test(userAgent)
              ? 'Linux'
              : null
  return system === null ? browser : `${browser} on ${system}`
}

/** The member's own account: two-factor, their password, their sessions; for an admin, the tenant's rule. */
export function registerAccount(router: Router, ctx: DashboardContext, enrolment: Enrolment): void {
  const { dashboard, logger, page, signedIn, verified, adminOnly, render, errorPage, clock } = ctx
  const { requireRecentAuth, confirmRecentAuth, passwordGate, codeThrottle } = ctx

  async function accountPage(req: Request, res: Response, status: number, passwordError: string | null) {
    const { member, tenant, session: current } = req.dashboard!
    const enrolled = (member.totpSecret ?? null) !== null
    const sessions = (await dashboard.listMemberSessions(member.memberId)).map((s) => ({
      handle: sessionHandle(s),
      device: deviceName(s.userAgent),
      ip: s.ip ?? 'unknown',
      signedInAt: s.createdAt,
      lastSeenAt: s.lastSeenAt,
      current: s.sessionDigest === current.sessionDigest,
      pending: (s.stage ?? 'full') !== 'full',
    }))
    render(res, status, 'account', {
      title: 'Account',
      notice: await takeFlash(dashboard, req),
      enrolled,
      recoveryLeft: enrolled ? await dashboard.countRecoveryCodes(member.memberId) : 0,
      required: await dashboard.requiresTwoFactor(tenant.tenantId),
      sessions,
      passwordError,
    })
  }

  const activity = (req: Request, action: string, target: string | null = null) =>
    dashboard.recordActivity({
      tenantId: req.dashboard!.tenant.tenantId,
      actorType: 'member',
      actor: req.dashboard!.member.email,
      action,
      target,
      ip: req.ip ?? null,
    })

  const flashAndBack = async (req: Request, res: Response, message: string) => {
    await dashboard.setFlash(req.dashboard!.session.sessionDigest, message)
    res.redirect(303, '/account')
  }

  router.get('/account', ...page, signedIn, (req, res, next) => {
    accountPage(req, res, 200, null).catch(next)
  })

  // Re-authentication for a page asked for by GET: the confirmation posts here, then the page opens again.
  router.get('/confirm-access', ...page, signedIn, (req, res, next) => {
    confirmRecentAuth(req, res).then((ok) => {
      if (ok) res.redirect(303, safeNext(req.query.next) ?? '/')
    }, next)
  })
  router.post('/confirm-access', ...page, form, verified, requireRecentAuth, (req, res) => {
    res.redirect(303, safeNext(req.query.next) ?? '/')
  })

  // Setting up two-factor shows a secret: only after a recent password check.
  router.get('/account/two-factor', ...page, signedIn, requireRecentAuth, (req, res, next) => {
    if ((req.dashboard!.member.totpSecret ?? null) !== null) return res.redirect(303, '/account')
    enrolment.page(req, res, req.dashboard!, '/account/two-factor', 200, null).catch(next)
  })

  router.post('/account/two-factor', ...page, form, verified, requireRecentAuth, (req, res, next) => {
    ;(async () => {
      if ((req.dashboard!.member.totpSecret ?? null) !== null) return res.redirect(303, '/account')
      const codes = await enrolment.confirm(req, res, req.dashboard!, '/account/two-factor')
      if (codes === null) return
      logger.info({ msg: 'two-factor enabled', memberId: req.dashboard!.member.memberId })
      render(res, 201, 'recovery-codes', { title: 'Save your recovery codes', codes, continueTo: '/account' })
    })().catch(next)
  })

  router.post('/account/two-factor/recovery-codes', ...page, form, verified, requireRecentAuth, (req, res, next) => {
    ;(async () => {
      const { member } = req.dashboard!
      const codes = newRecoveryCodes()
      if (
        !(await dashboard.replaceRecoveryCodes(
          member.memberId,
          codes.map((code) => recoveryDigest(code)),
        ))
      )
        return errorPage(res, 409, 'Two-factor is off', 'Set up two-factor first: recovery codes come with it.')
      await activity(req, 'two_factor.recovery_codes_replaced')
      render(res, 201, 'recovery-codes', { title: 'Save your recovery codes', codes, continueTo: '/account' })
    })().catch(next)
  })

  router.post('/account/two-factor/disable', ...page, form, verified, requireRecentAuth, (req, res, next) => {
    ;(async () => {
      const { member, tenant } = req.dashboard!
      if (await dashboard.requiresTwoFactor(tenant.tenantId))
        return errorPage(
          res,
          409,
          'Two-factor is required',
          `Your tenant ${tenant.tenantSlug} requires two-factor for every member, so it cannot be turned off.`,
        )
      if (!(await dashboard.disableTwoFactor(member.memberId))) return res.redirect(303, '/account')
      await activity(req, 'two_factor.disabled')
      await flashAndBack(req, res, 'Two-factor is off. Your recovery codes no longer work.')
    })().catch(next)
  })

  router.post(
    '/account/require-two-factor',
    ...page,
    form,
    verified,
    adminOnly,
    requireRecentAuth,
    (req, res, next) => {
      ;(async () => {
        const { member, tenant } = req.dashboard!
        const value = (req.body as Record<string, unknown>).require
        if (value !== 'yes' && value !== 'no')
          return errorPage(res, 400, 'Bad request', 'Choose whether to require two-factor from the Account page.')
        if (value === 'yes' && (member.totpSecret ?? null) === null)
          return errorPage(
            res,
            409,
            'Set up two-factor first',
            'Set up two-factor for your own account before requiring it of every member.',
          )
        await dashboard.setRequireTwoFactor(tenant.tenantId, value === 'yes')
        await activity(req, value === 'yes' ? 'two_factor.required' : 'two_factor.not_required')
        await flashAndBack(
          req,
          res,
          value === 'yes'
            ? 'Two-factor is now required: members without it set it up at their next page or sign-in.'
            : 'Two-factor is no longer required.',
        )
      })().catch(next)
    },
  )

  router.post('/account/password', ...page, form, verified, (req, res, next) => {
    const body = req.body as Record<string, unknown>
    const field = (name: string) => (typeof body[name] === 'string' ? body[name] : '')
    const current = field('current')
    const chosen = field('password')
    const repeated = field('confirm')
    ;(async () => {
      const { member, session } = req.dashboard!
      if (chosen !== repeated) return accountPage(req, res, 400, 'The new password and its confirmation differ.')
      const problem = passwordProblem(chosen)
      if (problem !== null) return accountPage(req, res, 400, `The new password is not accepted: ${problem}.`)
      // A wrong current password is charged to the account's budget before it is checked, like a code.
      const verdict = codeThrottle.reserve(member.memberId, null)
      if (!verdict.admitted) {
        res.setHeader('retry-after', String(Math.max(1, Math.ceil(verdict.retryAfterMs / 1000))))
        await recordCodeThrottled(ctx, req, member, 'password change')
        return accountPage(req, res, 429, hourSpentMessage(verdict.retryAfterMs))
      }
      const checked = passwordGate.run(async () => {
        const ok =
          current.length > 0 &&
          current.length <= MAX_PASSWORD_LENGTH &&
          (await verifyPassword(current, member.passwordHash))
        return ok ? await hashPassword(chosen) : null
      })
      if (checked === null) {
        codeThrottle.settle(verdict.reservation, 'success')
        res.setHeader('retry-after', '2')
        return accountPage(req, res, 503, 'The server is busy checking passwords. Try again in a few seconds.')
      }
      const hash = (await checked).value
      if (hash === null) {
        codeThrottle.settle(verdict.reservation, 'failure')
        await activity(req, 'member.password_change_refused', 'wrong current password')
        return accountPage(req, res, 401, 'The current password is not right.')
      }
      codeThrottle.settle(verdict.reservation, 'success')
      await dashboard.changePassword(member.memberId, hash, session.sessionDigest)
      // The password was just checked: a recent check for sensitive actions, unless they also ask for a code,
      // which this form does not check (else a password would turn two-factor off without the code).
      if ((member.totpSecret ?? null) === null) await dashboard.setVerifiedAt(session.sessionDigest, new Date(clock()))
      await activity(req, 'member.password_changed', member.email)
      logger.info({ msg: 'password changed', memberId: member.memberId, by: 'dashboard' })
      await flashAndBack(req, res, 'Password changed. Every other session of yours was ended.')
    })().catch(next)
  })

  router.post('/account/sessions/:handle/end', ...page, form, verified, (req, res, next) => {
    const handle = String(req.params.handle)
    ;(async () => {
      const { member, session: current } = req.dashboard!
      const found = (await dashboard.listMemberSessions(member.memberId)).find((s) => sessionHandle(s) === handle)
      // Another member's session gets exactly the answer of one that does not exist.
      if (found === undefined)
        return errorPage(res, 404, 'No such session', 'That session has ended already, or is not yours.')
      await dashboard.deleteMemberSession(member.memberId, found.sessionDigest)
      const where = `${deviceName(found.userAgent)}, ${found.ip ?? 'unknown address'}`
      await activity(req, 'session.ended', where)
      if (found.sessionDigest === current.sessionDigest) {
        ctx.setCookie(req, res, 'saiku_session', '', 0)
        return res.redirect(303, '/sign-in?signed-out=1')
      }
      await flashAndBack(req, res, `Session ended: ${where}.`)
    })().catch(next)
  })

  // A reload or Enter in the address bar on a form's URL asks for it by GET: back to the page the form is on.
  for (const path of [
    '/account/password',
    '/account/sessions/:handle/end',
    '/account/two-factor/disable',
    '/account/two-factor/recovery-codes',
    '/account/require-two-factor',
  ])
    router.get(path, ...page, signedIn, (_req, res) => res.redirect(303, '/account'))
}
