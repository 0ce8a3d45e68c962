import type { Context, Middleware, Next } from 'koa'
import {
  BODY_HEADERS,
  checkPermissions,
  endStartedResponse,
  errorResponse,
  errorResponseFor,
  notifyHook,
  errorResponseForStatus,
  permissionGuard,
  resolveSaikuErrorsOptions,
  warnHookFailed,
  type AuthDecision,
  type ErrorResponse,
  type PermissionGuardArguments,
  type SaikuErrorsOptions as CoreErrorsOptions,
} from '@saiku/core/adapter'
import {
  createAuthenticator,
  type Authenticator,
  type KeyStore,
  type SaikuOptions,
  type SaikuPrincipal,
  type WouldBeRefusal,
} from '@saiku/core'

declare module 'koa' {
  interface DefaultState {
    /** Set by `saikuAuth` once the request is admitted. */
    saiku?: SaikuPrincipal
    /** Set instead of `saiku` when report-only authentication admitted a request whose credentials failed: the refusal it would have had. */
    saikuUnverified?: WouldBeRefusal
  }
}

export interface SaikuMiddleware extends Middleware {
  /** The core authenticator: key management (`keys`), cache invalidation. */
  readonly authenticator: Authenticator
}

// Never ctx.throw: it drops headers already set (Retry-After) and answers in text.
// Headers go straight to the response, here as in saikuAuth: ctx.set and ctx.remove only add checks on the way.
function send(ctx: Context, response: ErrorResponse): void {
  const { res } = ctx
  for (const name of BODY_HEADERS) res.removeHeader(name)
  ctx.status = response.status
  for (const name in response.headers) res.setHeader(name, response.headers[name]!)
  ctx.body = response.body
}

// @koa/router gives a `use()` layer the path "<prefix>(?:\/|$)" or "<prefix>{/*rest}"; a route's own path is no mount point.
const ROUTER_USE_LAYER = /^(\/.*?)(?:\(\?:\\\/\|\$\)|\{\/\*rest\})$/

function routerPrefix(layerPath: unknown): string | undefined {
  return typeof layerPath === 'string' ? ROUTER_USE_LAYER.exec(layerPath)?.[1] : undefined
}

// The methods of the @koa/router routes that matched the path: what allowedMethods() puts in Allow,
// and what its thrown 405 (`{ throw: true }`) leaves out.
function routerMethods(ctx: Context): string[] | undefined {
  const { matched } = ctx as { matched?: unknown }
  if (!Array.isArray(matched)) return undefined
  return matched.flatMap((layer: { methods?: unknown }) =>
    Array.isArray(layer?.methods) ? layer.methods.filter((method) => typeof method === 'string') : [],
  )
}

/** Authenticates every request and applies the tenant's limits (Koa 2 and 3). */
export function saikuAuth(store: KeyStore, options?: SaikuOptions): SaikuMiddleware {
  const authenticator = createAuthenticator(store, options)
  const apply = (ctx: Context, decision: AuthDecision, next: Next): Promise<void> | void => {
    if (!decision.ok) {
      // Report-only authentication: the refusal is not sent, and the request goes on without a principal.
      if (!('unverified' in decision)) return send(ctx, decision)
      ctx.state.saikuUnverified = decision.unverified
      return next()
    }
    // A preflight passed on to the CORS layer: no principal, nothing to set.
    if (decision.principal === null) return next()
    const { res } = ctx
    for (const name in decision.headers) res.setHeader(name, decision.headers[name]!)
    ctx.state.saiku = decision.principal
    return next()
  }
  const middleware: Middleware = (ctx, next) => {
    const { req } = ctx
    const outcome = authenticator.check({
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      method: req.method!,
      url: ctx.originalUrl,
      // Below a koa-mount point (ctx.url), and below the prefix of the @koa/router layer running this middleware.
      mountedUrl: ctx.url,
      mountPrefix: routerPrefix((ctx as { routerPath?: unknown }).routerPath),
      ip: () => ctx.ip,
      principal: ctx.state.saiku,
      // Read only under report-only authentication.
      get unverified() {
        return ctx.state.saikuUnverified
      },
    })
    // The common request is decided at once: no promise hop before the next middleware.
    return outcome instanceof Promise
      ? outcome.then((decision) => apply(ctx, decision, next))
      : apply(ctx, outcome, next)
  }
  return Object.assign(middleware, { authenticator })
}

/**
 * Answers 403 unless the request's key holds every permission named. A request
 * without a principal gets a 401 challenging `realm`, from an options object after
 * the permissions (`requirePermission('keys:read', { realm })`; default "saiku").
 */
export function requirePermission(...args: PermissionGuardArguments): Middleware {
  const { permissions, realm } = permissionGuard(args)
  return async (ctx, next) => {
    const refusal = checkPermissions(ctx.state.saiku, permissions, realm)
    if (refusal !== null) return send(ctx, refusal)
    await next()
  }
}

/** `onError` may be async; what it throws or rejects with is a process warning, once per distinct message, and the JSON 500 still goes out. */
export type SaikuErrorsOptions = CoreErrorsOptions<(error: unknown, ctx: Context) => unknown>

/**
 * Mount first: writes a thrown error as the JSON error body (a 500 that reveals
 * nothing for anything unexpected, passed to `onError`, default: emitted on `app`
 * as `error`), and answers requests no route handled with the JSON 404 (unless
 * `notFound: false`). An error after the response started is reported and the connection closed.
 */
export function saikuErrors(options?: SaikuErrorsOptions): Middleware {
  const {
    notFound,
    realm,
    onError = (error: unknown, ctx: Context) => ctx.app.emit('error', error, ctx),
  } = resolveSaikuErrorsOptions(options)
  const report = (error: unknown, ctx: Context): void =>
    notifyHook(
      () => onError(error, ctx),
      (failure) => warnHookFailed('saikuErrors().onError', failure),
    )
  return async (ctx, next) => {
    try {
      await next()
    } catch (error) {
      if (ctx.headerSent || !ctx.writable) {
        // Too late for an error body: report it once and cut the connection.
        report(error, ctx)
        return endStartedResponse(ctx.res)
      }
      const response = errorResponseFor(error, {
        realm,
        principal: ctx.state.saiku,
        allowedMethods: routerMethods(ctx),
      })
      if (response.report) report(error, ctx)
      return send(ctx, response)
    }
    if (ctx.body != null || ctx.status < 400) return
    // A status set without a body (the router's 405, with its Allow) is answered in JSON too.
    const response =
      ctx.status === 404 ? (notFound ? errorResponse('not_found') : null) : errorResponseForStatus(ctx.status)
    if (response !== null) send(ctx, response)
  }
}

export { MemoryKeyStore, ownedByTenant, hasPermission, SaikuHttpError } from '@saiku/core'
// Every type a store author and a key-management caller names, so that an app with only this
// package installed (strict pnpm puts @saiku/core out of its reach) needs no other import.
export type {
  ApiKeyRecord,
  ApiKeySummary,
  Authenticator,
  CreatedApiKey,
  CreateKeyInput,
  KeyChanges,
  RotatedApiKey,
  RotateKeyInput,
  UpdateKeyInput,
  DecisionEvent,
  KeyEnvironment,
  KeyManager,
  KeyStore,
  SaikuOptions,
  SaikuPrincipal,
  Subscription,
  SubscriptionStatus,
  TenantAdminStore,
  TenantRecord,
  TenantView,
  WindowLimits,
  WouldBeRefusal,
} from '@saiku/core'
export type { PermissionGuardOptions } from '@saiku/core/adapter'
