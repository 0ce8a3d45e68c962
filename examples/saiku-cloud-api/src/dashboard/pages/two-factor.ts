import type { Request, Response, Router } from 'express'
import type { DashboardContext } from '../shared/context.js'
import { form } from '../shared/forms.js'
import { safeNext } from '../shared/redirects.js'
import { hourSpentMessage, recordCodeThrottled, useSecondFactor } from '../shared/second-factor.js'
import { equalSecrets } from '../shared/secrets.js'
import type { PendingSignIn, Signed } from '../shared/session.js'
import { completeSignIn, startSession } from '../shared/sign-in-session.js'
import {
  groupedSecret,
  newRecoveryCodes,
  newTotpSecret,
  readCode,
  recoveryDigest,
  totpQrDataUrl,
  totpStep,
  totpUri,
} from '../shared/two-factor.js'

// Two-factor sign-in's second step (the code after the password, or the set-up a tenant requires), and the
// enrolment both it and the Account page use: scan, confirm a code, keep the ten recovery codes shown once.

/** `?next=` for the step after this one, when the sign-in had one. */
const nextQuery = (req: Request): string => {
  const back = safeNext(req.query.next)
  return back === null ? '' : `?next=${encodeURIComponent(back)}`
}

export interface Enrolment {
  /** The set-up page: a secret offered (kept, sealed, in the session until confirmed), its QR code, the code field. */
  page(req: Request, res: Response, who: Signed, action: string, status: number, error: string | null): Promise<void>
  /**
   * Checks the code typed against the offered secret and, when right, turns two-factor on: resolves to the
   * recovery codes to show once. Otherwise it has answered (the page again with the error) and resolves to null.
   */
  confirm(req: Request, res: Response, who: Signed, action: string): Promise<string[] | null>
}

export function createEnrolment(ctx: DashboardContext): Enrolment {
  const { dashboard, render, twoFactor, codeThrottle, clock, errorPage } = ctx

  async function page(req: Request, res: Response, who: Signed, action: string, status: number, error: string | null) {
    const { member, session } = who
    const offered = session.enrolSecret == null ? null : twoFactor.open(member.memberId, session.enrolSecret)
    const secret = offered ?? newTotpSecret()
    if (offered === null) await dashboard.setEnrolSecret(session.sessionDigest, twoFactor.seal(member.memberId, secret))
    const uri = totpUri(secret, member.email)
    render(res, status, 'two-factor-enrol', {
      title: 'Set up two-factor',
      qr: await totpQrDataUrl(uri),
      secret: groupedSecret(secret),
      action,
      formCsrf: session.csrfToken,
      error,
      required: req.pendingSignIn?.stage === 'enrol',
    })
  }

  async function confirm(req: Request, res: Response, who: Signed, action: string): Promise<string[] | null> {
    const { member, session } = who
    const secret = session.enrolSecret == null ? null : twoFactor.open(member.memberId, session.enrolSecret)
    if (secret === null) {
      await page(req, res, who, action, 400, 'This set-up page is out of date. Scan the new QR code and try again.')
      return null
    }
    const typed = readCode(((req.body ?? {}) as Record<string, unknown>).code)
    if (typed.kind !== 'totp') {
      await page(req, res, who, action, 400, 'Enter the 6-digit code your authenticator app shows.')
      return null
    }
    const verdict = codeThrottle.reserve(member.memberId, null)
    if (!verdict.admitted) {
      res.setHeader('retry-after', String(Math.max(1, Math.ceil(verdict.retryAfterMs / 1000))))
      await recordCodeThrottled(ctx, req, member, 'two-factor set-up')
      await page(req, res, who, action, 429, hourSpentMessage(verdict.retryAfterMs))
      return null
    }
    const step = totpStep(secret, typed.token, clock())
    if (step === null) {
      codeThrottle.settle(verdict.reservation, 'failure')
      await page(
        req,
        res,
        who,
        action,
        401,
        'That code is not right. Check the time on your phone and try the next code.',
      )
      return null
    }
    codeThrottle.settle(verdict.reservation, 'success')
    const codes = newRecoveryCodes()
    const enabled = await dashboard.enableTwoFactor(
      member.memberId,
      twoFactor.seal(member.memberId, secret),
      step,
      codes.map((code) => recoveryDigest(code)),
    )
    await dashboard.setEnrolSecret(session.sessionDigest, null)
    if (!enabled) {
      errorPage(
        res,
        409,
        'Two-factor is on already',
        'Two-factor was turned on for this account already, from another page.',
      )
      return null
    }
    await dashboard.recordActivity({
      tenantId: member.tenantId,
      actorType: 'member',
      actor: member.email,
      action: 'two_factor.enabled',
      ip: req.ip ?? null,
    })
    return codes
  }

  return { page, confirm }
}

/** The sign-in's second step: /sign-in/code and /sign-in/two-factor. */
export function registerTwoFactor(router: Router, ctx: DashboardContext, enrolment: Enrolment): void {
  const { dashboard, logger, page, render, errorPage, setCookie, codeThrottle, foreignOrigin, refuseOrigin } = ctx

  /** The pending sign-in at `stage`, or an answer: a signed-in browser goes on, any other to the password step. */
  function pendingAt(req: Request, res: Response, stage: 'code' | 'enrol'): PendingSignIn | null {
    if (req.dashboard !== undefined) {
      res.redirect(303, safeNext(req.query.next) ?? '/')
      return null
    }
    const pending = req.pendingSignIn
    if (pending === undefined || pending.stage !== stage) {
      res.redirect(
        303,
        pending === undefined ? '/sign-in' : pending.stage === 'code' ? '/sign-in/code' : '/sign-in/two-factor',
      )
      return null
    }
    return pending
  }

  /** A form of the second step: from this site, with the pending session's token. */
  function checkedForm(req: Request, res: Response, pending: PendingSignIn): boolean {
    const token = ((req.body ?? {}) as Record<string, unknown>)._csrf
    if (typeof token === 'string' && equalSecrets(token, pending.session.csrfToken)) return true
    logger.info({ msg: 'refused form', reason: 'csrf', path: req.path, ip: req.ip })
    errorPage(
      res,
      403,
      'Request refused',
      'This form did not come from this dashboard, or it is out of date. Sign in again.',
    )
    return false
  }

  function codePage(res: Response, pending: PendingSignIn, status: number, error: string | null, req: Request) {
    render(res, status, 'sign-in-code', {
      title: 'Two-factor sign-in',
      formCsrf: pending.session.csrfToken,
      action: `/sign-in/code${nextQuery(req)}`,
      error,
    })
  }

  router.get('/sign-in/code', ...page, (req, res) => {
    const pending = pendingAt(req, res, 'code')
    if (pending !== null) codePage(res, pending, 200, null, req)
  })

  router.post('/sign-in/code', ...page, (req, res, next) => {
    const foreign = foreignOrigin(req)
    if (foreign !== null) return refuseOrigin(req, res, foreign)
    form(req, res, (error?: unknown) => {
      if (error !== undefined)
        return errorPage(res, 400, 'Bad request', 'That form could not be read. Go back and try again.')
      const pending = pendingAt(req, res, 'code')
      if (pending === null || !checkedForm(req, res, pending)) return
      const { member, session } = pending
      const typed = ((req.body ?? {}) as Record<string, unknown>).code
      if (typeof typed !== 'string' || typed.trim() === '')
        return codePage(res, pending, 400, 'Enter the code your authenticator app shows, or a recovery code.', req)
      ;(async () => {
        // Charged before the check, to this sign-in and to the account, whatever the browser or its address.
        const verdict = codeThrottle.reserve(member.memberId, session.sessionDigest)
        if (!verdict.admitted) {
          if (verdict.scope === 'attempt') return backToPassword(req, res, pending)
          res.setHeader('retry-after', String(Math.max(1, Math.ceil(verdict.retryAfterMs / 1000))))
          logger.info({ msg: 'sign-in code throttled', memberId: member.memberId, ip: req.ip })
          await recordCodeThrottled(ctx, req, member, 'too many wrong codes')
          return codePage(res, pending, 429, hourSpentMessage(verdict.retryAfterMs), req)
        }
        const used = await useSecondFactor(ctx, member, typed)
        if (used === null) {
          codeThrottle.settle(verdict.reservation, 'failure')
          await dashboard.recordActivity({
            tenantId: member.tenantId,
            actorType: 'member',
            actor: member.email,
            action: 'sign_in.code_refused',
            target: 'wrong code',
            ip: req.ip ?? null,
          })
          logger.info({ msg: 'sign-in code refused', memberId: member.memberId, ip: req.ip })
          const left = codeThrottle.attemptsLeft(session.sessionDigest)
          if (left === 0) return backToPassword(req, res, pending)
          return codePage(res, pending, 401, `Incorrect code. ${left === 1 ? '1 try' : `${left} tries`} left.`, req)
        }
        codeThrottle.settle(verdict.reservation, 'success')
        codeThrottle.forgetAttempt(session.sessionDigest)
        // The session is promoted under a new ID: the half-signed-in one's ID opens nothing.
        const digest = await startSession(ctx, req, res, member, 'full', ctx.clock())
        await completeSignIn(ctx, req, res, member, used === 'recovery' ? 'with a recovery code' : null)
        if (used === 'recovery') {
          const left = await dashboard.countRecoveryCodes(member.memberId)
          await dashboard.setFlash(
            digest,
            `You signed in with a recovery code, which cannot be used again. ${left === 1 ? '1 recovery code is' : `${left} recovery codes are`} left: on the Account page you can make new ones.`,
          )
          return res.redirect(303, '/account')
        }
        res.redirect(303, safeNext(req.query.next) ?? '/')
      })().catch(next)
    })
  })

  /** Too many wrong codes for this sign-in: it ends, and the member starts again from the password. */
  async function backToPassword(req: Request, res: Response, pending: PendingSignIn): Promise<void> {
    codeThrottle.forgetAttempt(pending.session.sessionDigest)
    await dashboard.deleteSession(pending.session.sessionDigest)
    setCookie(req, res, 'saiku_session', '', 0)
    res.redirect(303, '/sign-in?codes=1')
  }

  router.post('/sign-in/cancel', ...page, form, (req, res, next) => {
    const pending = req.pendingSignIn
    if (pending === undefined) return res.redirect(303, '/sign-in')
    if (foreignOrigin(req) !== null || !checkedForm(req, res, pending)) {
      if (!res.headersSent) errorPage(res, 403, 'Request refused', 'This form did not come from this dashboard.')
      return
    }
    dashboard.deleteSession(pending.session.sessionDigest).then(() => {
      setCookie(req, res, 'saiku_session', '', 0)
      res.redirect(303, '/sign-in?signed-out=1')
    }, next)
  })

  // The set-up a tenant's rule requires before any page.
  router.get('/sign-in/two-factor', ...page, (req, res, next) => {
    const pending = pendingAt(req, res, 'enrol')
    if (pending !== null)
      enrolment.page(req, res, pending, `/sign-in/two-factor${nextQuery(req)}`, 200, null).catch(next)
  })

  router.post('/sign-in/two-factor', ...page, (req, res, next) => {
    const foreign = foreignOrigin(req)
    if (foreign !== null) return refuseOrigin(req, res, foreign)
    form(req, res, (error?: unknown) => {
      if (error !== undefined)
        return errorPage(res, 400, 'Bad request', 'That form could not be read. Go back and try again.')
      const pending = pendingAt(req, res, 'enrol')
      if (pending === null || !checkedForm(req, res, pending)) return
      ;(async () => {
        const codes = await enrolment.confirm(req, res, pending, `/sign-in/two-factor${nextQuery(req)}`)
        if (codes === null) return
        const { member } = pending
        // A session held back only by the tenant's rule (stage full) is promoted like a pending one. It keeps
        // the time of its password check: a code of a secret it has just chosen is no re-authentication.
        await startSession(ctx, req, res, member, 'full', pending.session.verifiedAt?.getTime() ?? 0)
        await completeSignIn(ctx, req, res, member, 'after setting up two-factor')
        render(res, 201, 'recovery-codes', {
          title: 'Save your recovery codes',
          codes,
          continueTo: safeNext(req.query.next) ?? '/',
        })
      })().catch(next)
    })
  })
}
