import type { Request, RequestHandler, Response } from 'express'
import type { Logger } from 'pino'
import type { DashboardSettings } from '../settings.js'
import type { Renderer } from './render.js'
import { equalSecrets } from './secrets.js'
import type { Sessions } from './session.js'
import type { Site } from './site.js'

/**
 * An origin is a scheme, a host of at most 253 characters and a port: a longer one is forged. The origin
 * received, the one expected (from a Host header anyone can send) and the path are logged cut to this.
 */
const MAX_LOGGED_ORIGIN_LENGTH = 300

/** What a form came from, when it was not a page of this site, and what was expected instead. */
export interface ForeignOrigin {
  readonly received: string
  readonly expected: string
}

export interface Csrf {
  /**
   * Null when the request comes from a page of this site (its Origin, or failing that Sec-Fetch-Site);
   * otherwise what was received and what was expected.
   */
  readonly foreignOrigin: (req: Request) => ForeignOrigin | null
  /** 403 for a form from another origin; the log line has what an operator needs to fix a proxy setup. */
  readonly refuseOrigin: (req: Request, res: Response, refused: ForeignOrigin) => void
  /** CSRF: an Origin check, then the token bound to the session. */
  readonly verified: RequestHandler
}

export function createCsrf(deps: {
  readonly settings: DashboardSettings
  readonly logger: Logger
  readonly site: Site
  readonly errorPage: Renderer['errorPage']
  readonly signInUrl: Sessions['signInUrl']
}): Csrf {
  const { settings, logger, site, errorPage, signInUrl } = deps
  const publicOrigin = settings.publicOrigin

  function foreignOrigin(req: Request): ForeignOrigin | null {
    const expected = site.originOf(req)
    const origin = req.get('origin')
    if (origin !== undefined) return origin === expected ? null : { received: origin, expected }
    const fetchSite = req.get('sec-fetch-site')
    return fetchSite === undefined || fetchSite === 'same-origin'
      ? null
      : { received: `Sec-Fetch-Site: ${fetchSite}`, expected }
  }

  function refuseOrigin(req: Request, res: Response, refused: ForeignOrigin): void {
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

  return { foreignOrigin, refuseOrigin, verified }
}
