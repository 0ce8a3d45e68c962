import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { parseCookie, stringifySetCookie } from 'cookie'
import { Eta } from 'eta'
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express'
import helmet from 'helmet'
import type { Logger } from 'pino'
import {
  clientKey,
  isKeyId,
  limitsForTenant,
  SaikuHttpError,
  SaikuInputError,
  type ApiKeySummary,
  type Authenticator,
  type SaikuPrincipal,
  type TenantAdminStore,
  type TenantRecord,
  type TenantUsage,
  type WindowLimits,
} from '@saiku/core'
import { getBilling, PERMISSIONS, startTrial } from '../api.js'
import type { DashboardStore, Member, SessionRecord } from './store/index.js'
import { normalizeEmail } from './members.js'
import { PasswordGate, passwordCheckConcurrency } from './password-gate.js'
import { burnPasswordCheck, MAX_PASSWORD_LENGTH, verifyPassword } from './passwords.js'
import { createSignInCookies, DEVICE_COOKIE_MAX_AGE_SECONDS, SIGN_IN_FORM_TTL_SECONDS } from './sign-in-cookies.js'
import { minutesText, SignInThrottle, type SignInScope } from './sign-in-throttle.js'
import type { DashboardSettings } from './settings.js'

export { openDashboardStore } from './store/index.js'
export { readDashboardSettings } from './settings.js'
export { loadDashboardKey } from './sign-in-cookies.js'

const VIEWS = fileURLToPath(new URL('./views/', import.meta.url))
const ASSETS = fileURLToPath(new URL('./assets/', import.meta.url))

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
}

/** A throttled account's Activity gets at most one "Sign-in throttled" line this often. */
const THROTTLE_RECORD_INTERVAL_MS = 60_000
/** Retry-After when the password checks are all busy: a few hashes' time. */
const BUSY_RETRY_AFTER_SECONDS = 2
/** At most one "sign-in busy" log line this often; it carries the count refused since start. */
const BUSY_LOG_INTERVAL_MS = 10_000
/** Password checks waiting for a place, per place: a short queue, then 503. */
const PASSWORD_QUEUE_PER_PLACE = 2

/** Who is signed in, for one request. */
interface Signed {
  readonly session: SessionRecord
  readonly member: Member
  readonly tenant: TenantRecord
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The signed-in member of a dashboard request. */
      dashboard?: Signed
    }
  }
}

const digest = (value: string): Buffer => createHash('sha256').update(value).digest()
const sessionDigest = (id: string): string => digest(id).toString('base64url')
const equalSecrets = (a: string, b: string): boolean => timingSafeEqual(digest(a), digest(b))
const newToken = (): string => randomBytes(32).toString('base64url')
/** What newToken makes: checked before a submitted nonce reaches the store. */
const NONCE = /^[\w-]{43}$/

/**
 * An origin is a scheme, a host of at most 253 characters and a port: a longer one is forged. The origin
 * received, the one expected (from a Host header anyone can send) and the path are logged cut to this.
 */
const MAX_LOGGED_ORIGIN_LENGTH = 300

const SPENT_FORM =
  'That Create key form was already submitted or is out of date, so this submission created no key. ' +
  'If a key was created from it before, it is in the list below; its secret is shown only once.'

const NAV = [
  { href: '/', label: 'Overview' },
  { href: '/api-keys', label: 'API keys' },
  { href: '/usage', label: 'Usage' },
  { href: '/billing', label: 'Billing' },
  { href: '/activity', label: 'Activity' },
] as const

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
/** "1 Dec 2026, 14:05 UTC": one format everywhere, independent of the server's locale. */
export function formatTime(date: Date | null | undefined, never = 'Never'): string {
  if (date == null) return never
  const pad = (n: number) => String(n).padStart(2, '0')
  // No-break spaces: a narrow column breaks the line only between the date and the time.
  return `${date.getUTCDate()}\u00a0${MONTHS[date.getUTCMonth()]}\u00a0${date.getUTCFullYear()}, ${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}\u00a0UTC`
}

const ACTIONS: Record<string, string> = {
  'key.created': 'Key created',
  'key.revoked': 'Key revoked',
  'trial.started': 'Trial started',
  sign_in: 'Signed in',
  'sign_in.refused': 'Sign-in refused',
  'sign_in.throttled': 'Sign-in throttled',
  'member.added': 'Member added',
  'member.removed': 'Member removed',
  'member.password_reset': 'Password reset',
}

/** A day as YYYY-MM-DD, at 00:00 UTC; null unless it names a day of the calendar (never 2027-02-31). */
export function calendarDate(value: string): Date | null {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value)) return null
  const date = new Date(`${value}T00:00:00Z`)
  // Date rolls an impossible day over into the next month; only a day that reads back the same is real.
  return !Number.isNaN(date.getTime()) && date.toISOString().slice(0, 10) === value ? date : null
}

/**
 * A path of this site to go to after sign-in, or null: it starts with one `/`, never `//host` or `/\host`,
 * holds no scheme before it, and no space or control character (which URL parsers drop).
 */
export function safeNext(value: unknown): string | null {
  if (typeof value !== 'string' || value.length > 2_000) return null
  if (!/^\/(?![/\\])[\x21-\x7e]*$/.test(value) || value.includes('\\')) return null
  const base = 'http://dashboard.invalid'
  return new URL(value, base).origin === base ? value : null
}

/** The pages of the spec's dashboard, mounted in front of the JSON API. */
export function createDashboard(options: DashboardOptions): express.Router {
  const { store, dashboard, authenticator, logger, settings } = options
  const keys = authenticator.keys
  const eta = new Eta({ views: VIEWS, cache: true, autoEscape: true })
  const clock = options.now ?? Date.now
  const throttle = new SignInThrottle({ now: clock })
  const throttleRecorded = new Map<string, number>()
  const signInCookies = createSignInCookies(options.key ?? randomBytes(32))
  const concurrency = passwordCheckConcurrency()
  const passwordGate = new PasswordGate({ concurrency, queueLength: concurrency * PASSWORD_QUEUE_PER_PLACE })
  let busyLoggedMs = -Infinity
  const idleMs = settings.idleTimeoutSeconds * 1000
  const absoluteMs = settings.absoluteTimeoutSeconds * 1000
  // lastSeenAt is written at most this often per session.
  const touchEveryMs = Math.min(60_000, Math.floor(idleMs / 10))

  const sweep = setInterval(() => {
    const now = Date.now()
    dashboard.deleteExpiredSessions(new Date(now - idleMs), new Date(now - absoluteMs)).catch((error: unknown) => {
      logger.error({ msg: 'session sweep failed', err: { message: (error as Error).message } })
    })
  }, 600_000)
  sweep.unref()

  const router = express.Router()

  const securityHeaders = helmet({
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"],
        objectSrc: ["'none'"],
      },
    },
    referrerPolicy: { policy: 'same-origin' },
    frameguard: { action: 'deny' },
  })
  const noStore: RequestHandler = (_req, res, next) => {
    res.setHeader('cache-control', 'no-store')
    next()
  }
  const form = express.urlencoded({ extended: false, limit: '8kb', parameterLimit: 20 })

  const publicOrigin = settings.publicOrigin
  /** The origin browsers see: PUBLIC_ORIGIN, or the scheme and host as a trusted proxy forwards them. */
  const originOf = (req: Request): string => publicOrigin ?? `${req.protocol}://${req.host}`
  const secure = (req: Request): boolean => (publicOrigin === null ? req.secure : publicOrigin.startsWith('https:'))
  const cookieName = (req: Request, base: string) => (secure(req) ? `__Host-${base}` : base)
  function setCookie(req: Request, res: Response, base: string, value: string, maxAgeSeconds: number): void {
    res.append(
      'set-cookie',
      stringifySetCookie({
        name: cookieName(req, base),
        value,
        path: '/',
        httpOnly: true,
        sameSite: 'lax',
        secure: secure(req),
        maxAge: maxAgeSeconds,
      }),
    )
  }
  const readCookie = (req: Request, base: string): string | undefined => {
    const header = req.headers.cookie
    return header === undefined ? undefined : parseCookie(header)[cookieName(req, base)]
  }

  function render(res: Response, status: number, view: string, data: Record<string, unknown>): void {
    const req = res.req
    const signed = req.dashboard
    const html = eta.render(view, {
      ...data,
      path: req.path,
      nav: NAV,
      // Only what the layout shows: never the session's digest or the member's password hash.
      signed: signed && {
        member: { email: signed.member.email, role: signed.member.role },
        tenant: { tenantSlug: signed.tenant.tenantSlug, tier: signed.tenant.tier },
      },
      csrf: signed?.session.csrfToken ?? '',
      next: safeNext(req.query.next),
      formatTime,
      isAdmin: signed?.member.role === 'admin',
    })
    res.status(status).type('html').send(html)
  }

  function errorPage(res: Response, status: number, title: string, message: string): void {
    render(res, status, 'error', { title, message, status })
  }

  /** Loads the session from its cookie; ends it when it is past a timeout. Sets req.dashboard. */
  const session: RequestHandler = (req, res, next) => {
    const id = readCookie(req, 'saiku_session')
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
      if (now - found.lastSeenAt.getTime() >= touchEveryMs) await dashboard.touchSession(key, new Date(now))
      req.dashboard = { session: found, member, tenant }
    })().then(() => next(), next)
  }

  function clearSession(req: Request, res: Response, expired: boolean): void {
    setCookie(req, res, 'saiku_session', '', 0)
    if (expired) res.locals.sessionExpired = true
  }

  const page: RequestHandler[] = [securityHeaders, noStore, session]
  /** The sign-in page, saying why, and for a page asked for by GET the way back to it after sign-in. */
  const signInUrl = (req: Request, res: Response): string => {
    const query = new URLSearchParams()
    if (res.locals.sessionExpired === true) query.set('expired', '1')
    const back = req.method === 'GET' || req.method === 'HEAD' ? safeNext(req.originalUrl) : null
    if (back !== null && back !== '/') query.set('next', back)
    return query.size === 0 ? '/sign-in' : `/sign-in?${query.toString()}`
  }
  const signedIn: RequestHandler = (req, res, next) => {
    if (req.dashboard !== undefined) return next()
    res.redirect(303, signInUrl(req, res))
  }

  /**
   * Null when the request comes from a page of this site (its Origin, or failing that Sec-Fetch-Site);
   * otherwise what was received and what was expected.
   */
  function foreignOrigin(req: Request): { received: string; expected: string } | null {
    const expected = originOf(req)
    const origin = req.get('origin')
    if (origin !== undefined) return origin === expected ? null : { received: origin, expected }
    const site = req.get('sec-fetch-site')
    return site === undefined || site === 'same-origin' ? null : { received: `Sec-Fetch-Site: ${site}`, expected }
  }

  /** 403 for a form from another origin; the log line has what an operator needs to fix a proxy setup. */
  function refuseOrigin(req: Request, res: Response, refused: { received: string; expected: string }): void {
    logger.warn({
      msg: 'refused form: origin',
      // Sent by anyone: bounded, so a flood of forged forms cannot write long lines.
      path: req.path.slice(0, MAX_LOGGED_ORIGIN_LENGTH),
      origin: refused.received.slice(0, MAX_LOGGED_ORIGIN_LENGTH),
      expected: refused.expected.slice(0, MAX_LOGGED_ORIGIN_LENGTH),
      trustProxy: settings.trustProxy,
      publicOrigin,
      ip: req.ip,
    })
    const scheme = (origin: string) => /^(https?):\/\//.exec(origin)?.[1]
    const host = (origin: string) => origin.replace(/^https?:\/\//, '')
    const received = scheme(refused.received)
    // Same host, another scheme: TLS ends at a proxy the app does not trust, the usual slip in production.
    const message =
      received !== undefined &&
      received !== scheme(refused.expected) &&
      host(refused.received) === host(refused.expected)
        ? `This form was sent from ${refused.received}, but the dashboard sees its own address as ${refused.expected}. ` +
          'If TLS ends at a proxy, the operator must trust it with TRUST_PROXY (for example TRUST_PROXY=1) or set PUBLIC_ORIGIN.'
        : 'This form did not come from this dashboard. Go back, reload the page and try again.'
    errorPage(res, 403, 'Request refused', message)
  }

  const formToken = (req: Request): string => {
    const value = (req.body as Record<string, unknown> | undefined)?._csrf
    return typeof value === 'string' ? value : ''
  }

  /** CSRF: an Origin check, then the token bound to the session. */
  const verified: RequestHandler = (req, res, next) => {
    const refuse = () => {
      logger.info({
        msg: 'refused form',
        reason: 'csrf',
        path: req.path,
        tenantId: req.dashboard?.tenant.tenantId ?? null,
        ip: req.ip,
      })
      errorPage(
        res,
        403,
        'Request refused',
        'This form did not come from this dashboard, or it is out of date. Go back, reload the page and try again.',
      )
    }
    // A cross-site POST is refused before anything else, signed in or not.
    const foreign = foreignOrigin(req)
    if (foreign !== null) return refuseOrigin(req, res, foreign)
    const signed = req.dashboard
    if (signed === undefined) return res.redirect(303, signInUrl(req, res))
    if (!equalSecrets(formToken(req), signed.session.csrfToken)) return refuse()
    next()
  }
  const adminOnly: RequestHandler = (req, res, next) => {
    if (req.dashboard?.member.role === 'admin') return next()
    errorPage(
      res,
      403,
      'Not allowed',
      'Your role is viewer: you can see keys and billing, but only an admin can change them.',
    )
  }

  const actor = (req: Request) => ({
    actorType: 'member' as const,
    actor: req.dashboard!.member.email,
    ip: req.ip ?? null,
  })
  const asPrincipal = (tenant: TenantRecord) => ({ tenant: { tenantId: tenant.tenantId } }) as SaikuPrincipal

  // -------- Sign in and out

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
        // A new session ID at every sign-in; any session the browser had is ended.
        const previous = readCookie(req, 'saiku_session')
        if (previous !== undefined && previous.length <= 100) await dashboard.deleteSession(sessionDigest(previous))
        const id = newToken()
        const now = new Date()
        await dashboard.createSession({
          sessionDigest: sessionDigest(id),
          memberId: member.memberId,
          csrfToken: newToken(),
          createdAt: now,
          lastSeenAt: now,
        })
        await dashboard.recordActivity({
          tenantId: member.tenantId,
          actorType: 'member',
          actor: member.email,
          action: 'sign_in',
          ip: req.ip ?? null,
        })
        // This browser now passes the account-wide budget for this account.
        setCookie(
          req,
          res,
          'saiku_device',
          signInCookies.rememberDevice(deviceCookie, member.email),
          DEVICE_COOKIE_MAX_AGE_SECONDS,
        )
        setCookie(req, res, 'saiku_session', id, settings.absoluteTimeoutSeconds)
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
  router.get('/api-keys/:keyId/revoke', ...page, signedIn, (_req, res) => res.redirect(303, '/api-keys'))
  router.get('/billing/trial', ...page, signedIn, (_req, res) => res.redirect(303, '/billing'))

  // -------- Pages

  router.get('/', ...page, signedIn, (req, res) => {
    const { tenant } = req.dashboard!
    let limits: WindowLimits | null = null
    try {
      limits = limitsForTenant(authenticator.options.tiers, tenant)
    } catch {
      // A tenant the tier table cannot serve: the page says so instead of numbers.
    }
    render(res, 200, 'overview', {
      title: 'Overview',
      view: {
        tenantId: tenant.tenantId,
        tenantSlug: tenant.tenantSlug,
        tier: tenant.tier,
        connectionName: tenant.connectionName,
      },
      limits,
      origin: originOf(req),
    })
  })

  /** The session's notice, shown by one page only: a reload, or a link with any query, shows none. */
  async function takeFlash(req: Request): Promise<string | null> {
    const { session: current } = req.dashboard!
    const message = current.flash ?? null
    if (message === null) return null
    return (await dashboard.takeFlash(current.sessionDigest, message)) ? message : null
  }

  const keyRows = (list: ApiKeySummary[]) =>
    list.map((k) => ({ ...k, expired: k.expiresAt !== null && k.expiresAt.getTime() <= Date.now() }))

  router.get('/api-keys', ...page, signedIn, (req, res, next) => {
    ;(async () => {
      const list = await keys.list(req.dashboard!.tenant.tenantId)
      render(res, 200, 'api-keys', { title: 'API keys', keys: keyRows(list), notice: await takeFlash(req) })
    })().catch(next)
  })

  async function newKeyForm(
    req: Request,
    res: Response,
    status: number,
    error: string | null,
    values: { label: string; permissions: string[]; environment: string; expires: string },
  ) {
    const nonce = newToken()
    await dashboard.addFormNonce(req.dashboard!.session.sessionDigest, nonce)
    render(res, status, 'key-new', { title: 'Create key', error, values, nonce, permissions: PERMISSIONS })
  }

  router.get('/api-keys/new', ...page, signedIn, adminOnly, (req, res, next) => {
    newKeyForm(req, res, 200, null, { label: '', permissions: [], environment: 'live', expires: '' }).catch(next)
  })

  router.post('/api-keys', ...page, form, verified, adminOnly, (req, res, next) => {
    const body = req.body as Record<string, unknown>
    const { tenant, session: current } = req.dashboard!
    ;(async () => {
      // One key per rendered form: a resubmitted one (reload, back, double click) creates nothing. The
      // server cannot tell a used form from a forgotten one, so the notice claims neither.
      const nonce = typeof body._form === 'string' ? body._form : ''
      if (!NONCE.test(nonce) || !(await dashboard.takeFormNonce(current.sessionDigest, nonce))) {
        await dashboard.setFlash(current.sessionDigest, SPENT_FORM)
        return res.redirect(303, '/api-keys')
      }
      const label = typeof body.label === 'string' ? body.label.trim() : ''
      const picked =
        body.permissions === undefined ? [] : Array.isArray(body.permissions) ? body.permissions : [body.permissions]
      const permissions = picked.filter((p): p is string => typeof p === 'string')
      const environment = body.environment === 'test' ? 'test' : 'live'
      const expires = typeof body.expires === 'string' ? body.expires : ''
      const values = { label, permissions, environment, expires }
      const unknown = permissions.filter((p) => !(PERMISSIONS as readonly string[]).includes(p))
      if (
        unknown.length > 0 ||
        (body.environment !== undefined && body.environment !== 'live' && body.environment !== 'test')
      ) {
        return newKeyForm(req, res, 400, 'Choose permissions and an environment from the lists.', {
          ...values,
          permissions: [],
        })
      }
      let expiresAt: Date | null = null
      if (expires !== '') {
        expiresAt = calendarDate(expires)
        if (expiresAt === null)
          return newKeyForm(req, res, 400, 'The expiry must be a real date, written like 2030-01-31.', values)
        if (expiresAt.getTime() <= Date.now())
          return newKeyForm(req, res, 400, 'The expiry must be a date after today.', values)
      }
      let created
      try {
        created = await keys.create(tenant.tenantId, { label, permissions, environment, expiresAt })
      } catch (error) {
        if (error instanceof SaikuInputError) {
          const message = error.message.replace(/^label/, 'The label')
          return newKeyForm(req, res, 400, message, values)
        }
        throw error
      }
      await dashboard.recordActivity({
        tenantId: tenant.tenantId,
        ...actor(req),
        action: 'key.created',
        target: created.keyId,
      })
      logger.info({ msg: 'key created', tenantId: tenant.tenantId, keyId: created.keyId, by: 'dashboard' })
      // The secret is in this response only: never in a URL, a log or a later page (no-store).
      render(res, 201, 'key-created', { title: 'Key created', created })
    })().catch(next)
  })

  router.post('/api-keys/:keyId/revoke', ...page, form, verified, adminOnly, (req, res, next) => {
    const keyId = String(req.params.keyId)
    const { tenant } = req.dashboard!
    ;(async () => {
      const key = isKeyId(keyId) ? (await keys.list(tenant.tenantId)).find((k) => k.keyId === keyId) : undefined
      // Another tenant's key gets exactly the answer of a key that does not exist.
      if (key === undefined)
        return errorPage(res, 404, 'No such key', 'There is no live key with this ID in your tenant.')
      if ((req.body as Record<string, unknown>).confirm !== 'yes')
        return render(res, 200, 'key-revoke', { title: 'Revoke key', key })
      if (!(await keys.revoke(tenant.tenantId, keyId)))
        return errorPage(res, 404, 'No such key', 'There is no live key with this ID in your tenant.')
      await dashboard.recordActivity({ tenantId: tenant.tenantId, ...actor(req), action: 'key.revoked', target: keyId })
      logger.info({ msg: 'key revoked', tenantId: tenant.tenantId, keyId, by: 'dashboard' })
      await dashboard.setFlash(req.dashboard!.session.sessionDigest, `Key ${keyId} revoked.`)
      res.redirect(303, '/api-keys')
    })().catch(next)
  })

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
      render(res, 200, 'usage', { title: 'Usage', usage, unavailable, keys: keyRows(byLastUse) })
    })().catch(next)
  })

  router.get('/billing', ...page, signedIn, (req, res, next) => {
    ;(async () => {
      const result = await getBilling(store, asPrincipal(req.dashboard!.tenant))
      const billing = result.body as { status: string; trialEndsAt: string | null; trialAvailable: boolean }
      render(res, 200, 'billing', {
        title: 'Billing',
        billing: { ...billing, trialEndsAt: billing.trialEndsAt === null ? null : new Date(billing.trialEndsAt) },
        notice: await takeFlash(req),
      })
    })().catch(next)
  })

  router.post('/billing/trial', ...page, form, verified, adminOnly, (req, res, next) => {
    const { tenant } = req.dashboard!
    startTrial(store, asPrincipal(tenant)).then(
      async () => {
        await dashboard.recordActivity({ tenantId: tenant.tenantId, ...actor(req), action: 'trial.started' })
        await dashboard.setFlash(req.dashboard!.session.sessionDigest, 'Your 14-day trial has started.')
        res.redirect(303, '/billing')
      },
      (error: unknown) => {
        if (error instanceof SaikuHttpError && error.wireCode === 'conflict')
          return errorPage(res, 409, 'Trial not available', error.message)
        next(error)
      },
    )
  })

  router.get('/activity', ...page, signedIn, (req, res, next) => {
    dashboard.listActivity(req.dashboard!.tenant.tenantId, 200).then((events) => {
      render(res, 200, 'activity', {
        title: 'Activity',
        events: events.map((e) => ({ ...e, label: ACTIONS[e.action] ?? e.action })),
      })
    }, next)
  })

  router.use('/assets', securityHeaders, express.static(ASSETS, { index: false, maxAge: '1h', fallthrough: false }))

  // Failures on a dashboard page get a page, never a stack trace.
  router.use((error: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(error)
    const status = (error as { status?: number }).status
    if (status === 413 || status === 400 || status === 404) {
      return errorPage(
        res,
        status,
        status === 404 ? 'Not found' : 'Bad request',
        status === 413
          ? 'That form was too large.'
          : status === 404
            ? 'There is nothing here.'
            : 'That request could not be read.',
      )
    }
    logger.error({
      msg: 'dashboard failure',
      path: req.path,
      err: error instanceof Error ? { name: error.name, message: error.message } : String(error),
    })
    errorPage(res, 503, 'Something went wrong', 'The dashboard could not complete this request. Try again in a moment.')
  })

  return router
}

/** Records what API keys do through the JSON API in the Activity log. */
export function recordApiAction(dashboard: DashboardStore, logger: Logger) {
  return (event: {
    tenantId: string
    keyId: string
    action: string
    target?: string | null
    ip?: string | undefined
  }) => {
    dashboard
      .recordActivity({
        tenantId: event.tenantId,
        actorType: 'api_key',
        actor: event.keyId,
        action: event.action,
        target: event.target ?? null,
        ip: event.ip ?? null,
      })
      .catch((error: unknown) =>
        logger.error({ msg: 'activity write failed', err: { message: (error as Error).message } }),
      )
  }
}
