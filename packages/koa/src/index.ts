import type { Context, Middleware } from 'koa'
import {
  BODY_HEADERS,
  checkPermissions,
  createAuthenticator,
  errorResponse,
  errorResponseFor,
  validatePermissionList,
  type Authenticator,
  type ErrorResponse,
  type KeyStore,
  type SaikuOptions,
  type SaikuPrincipal,
} from '@saiku/core'

declare module 'koa' {
  interface DefaultState {
    /** Set by `saikuAuth` once the request is admitted. */
    saiku?: SaikuPrincipal
  }
}

export interface SaikuMiddleware extends Middleware {
  /** The core authenticator: key management (`keys`), cache invalidation. */
  readonly authenticator: Authenticator
}

// Never ctx.throw: it drops headers already set (Retry-After) and answers in text.
function send(ctx: Context, response: ErrorResponse): void {
  for (const name of BODY_HEADERS) ctx.remove(name)
  ctx.status = response.status
  ctx.set(response.headers)
  ctx.body = response.body
}

/** Authenticates every request and applies the tenant's limits (Koa 2 and 3). */
export function saikuAuth(store: KeyStore, options?: SaikuOptions): SaikuMiddleware {
  const authenticator = createAuthenticator(store, options)
  const middleware: Middleware = async (ctx, next) => {
    const { req } = ctx
    const decision = await authenticator.authenticate({
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      method: ctx.method,
      url: ctx.originalUrl,
      ip: ctx.ip,
    })
    if (!decision.ok) return send(ctx, decision)
    ctx.set(decision.headers)
    ctx.state.saiku = decision.principal
    await next()
  }
  return Object.assign(middleware, { authenticator })
}

/** Answers 403 unless the request's key holds every permission named. */
export function requirePermission(...permissions: string[]): Middleware {
  const required = validatePermissionList(permissions)
  return async (ctx, next) => {
    const refusal = checkPermissions(ctx.state.saiku, required)
    if (refusal !== null) return send(ctx, refusal)
    await next()
  }
}

export interface ErrorMiddlewareOptions {
  /** Answer requests no route handled with the JSON 404. Default true. */
  notFound?: boolean
}

/**
 * Mount first: writes a thrown SaikuHttpError (or a body-parser error) as the
 * JSON error body, anything else as a bare 500 (emitted on `app` as `error`).
 */
export function saikuErrors(options: ErrorMiddlewareOptions = {}): Middleware {
  const notFound = options.notFound ?? true
  return async (ctx, next) => {
    try {
      await next()
    } catch (error) {
      if (ctx.headerSent || !ctx.writable) throw error
      const response = errorResponseFor(error)
      if (response.status >= 500) ctx.app.emit('error', error, ctx)
      return send(ctx, response)
    }
    if (notFound && ctx.status === 404 && ctx.body == null) send(ctx, errorResponse('not_found'))
  }
}

export { MemoryKeyStore, ownedByTenant, hasPermission, SaikuHttpError } from '@saiku/core'
export type { KeyStore, SaikuOptions, SaikuPrincipal, TenantRecord } from '@saiku/core'
