import express, { type NextFunction, type Request, type Response, type Router } from 'express'
import type { DashboardContext } from '../shared/context.js'
import { securityHeaders } from '../shared/security.js'

/** Registered last: the stylesheet and scripts in `assets`, and the page any failure on a dashboard page gets. */
export function registerFallback(router: Router, ctx: DashboardContext, assets: string): void {
  const { logger, errorPage } = ctx

  router.use('/assets', securityHeaders, express.static(assets, { index: false, maxAge: '1h', fallthrough: false }))

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
}
