import type { Request, RequestHandler, Response, Router } from 'express'
import { clientKey } from '@saiku/core'
import { normalizeEmail } from '../members.js'
import type { DashboardContext } from '../shared/context.js'
import { form } from '../shared/forms.js'
import { burnPasswordCheck, MAX_PASSWORD_LENGTH, verifyPassword } from '../shared/passwords.js'
import { safeNext } from '../shared/redirects.js'
import { createSignInCookies, SIGN_IN_FORM_TTL_SECONDS } from '../shared/sign-in-cookies.js'
import { completeSignIn, startSession } from '../shared/sign-in-session.js'
import { minutesText, SignInThrottle, type SignInScope } from '../shared/sign-in-throttle.js'
import type { Member } from '../store/index.js'

/** A throttled account's Activity gets at most one "Sign-in throttled" line this often. */
const THROTTLE_RECORD_INTERVAL_MS = 60_000
/** Retry-After when the password checks are all busy: a few hashes' time. */
const BUSY_RETRY_AFTER_SECONDS = 2
/** At most one "sign-in busy" log line this often; it carries the count refused since start. */
const BUSY_LOG_INTERVAL_MS = 10_000

/** Sign in and out: the sign-in budgets, the bounded password checks, and the session each sign-in starts. */
export function registerSignIn(router: Router, ctx: DashboardContext): void {
  const { dashboard, logger, clock, page, render, errorPage, setCookie, readCookie } = ctx
  const { foreignOrigin, refuseOrigin, verified } = ctx
  const throttle = new SignInThrottle({ now: clock })
  const throttleRecorded = new Map<string, number>()
  const signInCookies = createSignInCookies(ctx.key)
  const { passwordGate } = ctx
  let busyLoggedMs = -Infinity

  /** The sign-in cookie's browser ID, a new one when it has none; refreshed, so its forms live their hour. */
  function signInBrowser(req: Request, res: Response): string {
    const current = readCookie(req, 'saiku_signin')
    const id = signInCookies.isBrowserId(current) ? current : signInCookies.newBrowserId()
    setCookie(req, res, 'saiku_signin', id, SIGN_IN_FORM_TTL_SECONDS)
    return id
  }

  function signInPage(
    req: Request,
    res: Response,
    status: number,
    content: { notice?: string | null; error?: string | null; email?: string },
  ): void {
    const signinToken = signInCookies.formToken(signInBrowser(req, res), clock())
    render(res, status, 'sign-in', {
      title: 'Sign in',
      signinToken,
      notice: content.notice ?? null,
      error: content.error ?? null,
      email: content.email ?? '',
    })
  }

  router.get('/sign-in', ...page, (req, res) => {
    if (req.dashboard !== undefined) return res.redirect(303, safeNext(req.query.next) ?? '/')
    const notice =
      req.query.expired === '1'
        ? 'Your session expired. Sign in again.'
        : req.query['signed-out'] === '1'
          ? 'You are signed out.'
          : req.query.codes === '1'
            ? 'Too many wrong codes. Sign in again with your password.'
            : null
    signInPage(req, res, 200, { notice })
  })

  /** Records a throttled sign-in in the account's Activity, at most once a minute per account. */
  async function recordThrottled(req: Request, account: string, scopes: readonly SignInScope[]): Promise<void> {
    const nowMs = clock()
    const last = throttleRecorded.get(account)
    if (last !== undefined && nowMs - last < THROTTLE_RECORD_INTERVAL_MS) return
    throttleRecorded.delete(account)
    if (throttleRecorded.size >= 10_000) throttleRecorded.delete(throttleRecorded.keys().next().value as string)
    throttleRecorded.set(account, nowMs)
    let email: string
    try {
      email = normalizeEmail(account)
    } catch {
      return
    }
    const member = await dashboard.findMemberByEmail(email)
    if (member === null) return
    await dashboard.recordActivity({
      tenantId: member.tenantId,
      actorType: 'member',
      actor: member.email,
      action: 'sign_in.throttled',
      target: scopes.includes('accountAddress') ? 'too many failures from this address' : 'too many failures',
      ip: req.ip ?? null,
    })
  }

  /**
   * Every sign-in attempt, whatever its body, is charged to the budgets before
   * anything is checked, and given back only when it was not a failure.
   */
  const signInPost: RequestHandler = (req, res, next) => {
    const address = clientKey(req.ip)
    /** Refused before any password check: charged to the address as a failure. */
    const refuseUnread = (status: number, title: string, message: string, reason: string) => {
      const verdict = throttle.reserve({ address, account: null, device: null })
      if (!verdict.admitted) return throttled(verdict.retryAfterMs, '', null, verdict.scopes)
      throttle.settle(verdict.reservation, 'failure')
      logger.info({ msg: 'sign-in refused', reason, ip: req.ip })
      errorPage(res, status, title, message)
    }
    const throttled = (retryAfterMs: number, email: string, account: string | null, scopes: readonly SignInScope[]) => {
      res.setHeader('retry-after', String(Math.max(1, Math.ceil(retryAfterMs / 1000))))
      logger.info({ msg: 'sign-in throttled', ip: req.ip, scopes })
      const answer = () =>
        signInPage(req, res, 429, {
          error: `Too many failed sign-in attempts. Try again in ${minutesText(retryAfterMs)}.`,
          email,
        })
      if (account === null || !scopes.some((scope) => scope !== 'address')) return answer()
      recordThrottled(req, account, scopes).then(answer, (error: unknown) => {
        logger.error({ msg: 'activity write failed', err: { message: (error as Error).message } })
        answer()
      })
    }

    // A form from another site is refused first, on its headers, and charged to nobody: it is sent by the browser
    // of whoever opened that site, from their address, so a charge would let any page spend its visitors' budget.
    const foreign = foreignOrigin(req)
    if (foreign !== null) return refuseOrigin(req, res, foreign)
    const isForm = req.is('application/x-www-form-urlencoded') === 'application/x-www-form-urlencoded'
    if (!isForm) {
      // No body at all, or one of another type (JSON, text/plain, multipart): the sign-in form sends neither.
      const unsupported = typeof req.is('*/*') === 'string'
      return refuseUnread(
        unsupported ? 415 : 400,
        unsupported ? 'Unsupported form' : 'Bad request',
        'Sign in with the form on the sign-in page.',
        unsupported ? 'not a form' : 'no body',
      )
    }
    form(req, res, (error?: unknown) => {
      if (error !== undefined) {
        const status = (error as { status?: number }).status
        const tooLarge = status === 413
        return refuseUnread(
          tooLarge ? 413 : status === 415 ? 415 : 400,
          'Bad request',
          tooLarge ? 'That form was too large.' : 'That sign-in form could not be read. Reload the page and try again.',
          'unreadable form',
        )
      }
      const body = req.body as Record<string, unknown>
      const browserId = readCookie(req, 'saiku_signin')
      const fieldToken = typeof body._csrf === 'string' ? body._csrf : ''
      if (!signInCookies.isBrowserId(browserId) || !signInCookies.checkFormToken(browserId, fieldToken, clock())) {
        return refuseUnread(
          403,
          'Request refused',
          'This sign-in form did not come from this dashboard, or cookies are off. Reload the sign-in page and try again.',
          'csrf',
        )
      }
      const rawEmail = typeof body.email === 'string' ? body.email.slice(0, 254) : ''
      const password = typeof body.password === 'string' ? body.password : ''
      const typed = rawEmail.trim().toLowerCase()
      const account = typed === '' ? null : typed
      const deviceCookie = readCookie(req, 'saiku_device')
      const device = account === null ? null : signInCookies.deviceFor(deviceCookie, account)
      const verdict = throttle.reserve({ address, account, device })
      if (!verdict.admitted) return throttled(verdict.retryAfterMs, rawEmail, account, verdict.scopes)
      const { reservation } = verdict

      // A client that hangs up while its check waits (a closed tab, a flood that does not wait) frees its place.
      const abandoned = new AbortController()
      res.once('close', () => {
        if (!res.writableFinished) abandoned.abort()
      })
      const checked = passwordGate.run(async () => {
        let email: string | null = null
        try {
          email = normalizeEmail(rawEmail)
        } catch {
          // Not an address: it fails like any unknown one, after the same work.
        }
        const member = email === null ? null : await dashboard.findMemberByEmail(email)
        const ok =
          password.length > 0 && password.length <= MAX_PASSWORD_LENGTH && member !== null
            ? await verifyPassword(password, member.passwordHash)
            : await burnPasswordCheck(password.slice(0, MAX_PASSWORD_LENGTH))
        return { member, ok }
      }, abandoned.signal)
      if (checked === null) {
        // The server is busy checking other passwords: not this client's failure, so nothing is spent.
        throttle.settle(reservation, 'unchecked')
        res.setHeader('retry-after', String(BUSY_RETRY_AFTER_SECONDS))
        const nowMs = clock()
        // One line per interval, however many are refused: a flood must not flood the log too.
        if (nowMs - busyLoggedMs >= BUSY_LOG_INTERVAL_MS) {
          busyLoggedMs = nowMs
          logger.warn({ msg: 'sign-in busy', ip: req.ip, ...passwordGate.stats })
        }
        return signInPage(req, res, 503, {
          error: 'Sign-in is busy right now. Try again in a few seconds.',
          email: rawEmail,
        })
      }
      ;(async () => {
        let member: Member | null
        let ok: boolean
        try {
          ;({ member, ok } = (await checked).value)
        } catch (error) {
          throttle.settle(reservation, 'unchecked')
          // Left before its turn: nothing was checked, and nobody is there to answer.
          if (abandoned.signal.aborted && error === abandoned.signal.reason) return
          throw error
        }
        if (!ok || member === null) {
          throttle.settle(reservation, 'failure')
          if (member !== null)
            await dashboard.recordActivity({
              tenantId: member.tenantId,
              actorType: 'member',
              actor: member.email,
              action: 'sign_in.refused',
              target: 'wrong password',
              ip: req.ip ?? null,
            })
          logger.info({ msg: 'sign-in refused', ip: req.ip })
          return signInPage(req, res, 401, { error: 'Incorrect email or password.', email: rawEmail })
        }
        throttle.settle(reservation, 'success')
        // A new session ID at every sign-in; any session the browser had is ended. A member with two-factor
        // (or whose tenant requires it) gets a session that waits for the second step and opens no page.
        const stage =
          (member.totpSecret ?? null) !== null
            ? 'code'
            : (await dashboard.requiresTwoFactor(member.tenantId))
              ? 'enrol'
              : 'full'
        await startSession(ctx, req, res, member, stage, clock())
        const back = safeNext(req.query.next)
        if (stage !== 'full') {
          const path = stage === 'code' ? '/sign-in/code' : '/sign-in/two-factor'
          return res.redirect(303, back === null ? path : `${path}?next=${encodeURIComponent(back)}`)
        }
        await completeSignIn(ctx, req, res, member, null)
        res.redirect(303, safeNext(req.query.next) ?? '/')
      })().catch(next)
    })
  }
  router.post('/sign-in', ...page, signInPost)

  router.post('/sign-out', ...page, form, verified, (req, res, next) => {
    dashboard.deleteSession(req.dashboard!.session.sessionDigest).then(() => {
      setCookie(req, res, 'saiku_session', '', 0)
      res.redirect(303, '/sign-in?signed-out=1')
    }, next)
  })

  // A reload or Enter in the address bar on a form's URL asks for it by GET: back to the page the form is on.
  router.get('/sign-out', ...page, (req, res) => res.redirect(303, req.dashboard === undefined ? '/sign-in' : '/'))
}
