import type { Context, ErrorHandler, MiddlewareHandler, NotFoundHandler } from 'hono'
import { baseRoutePath } from 'hono/route'
import {
  checkPermissions,
  clientAddressValue,
  errorResponse,
  errorResponseFor,
  notifyHook,
  permissionGuard,
  resolveSaikuErrorsOptions,
  syncHookValue,
  warnHookFailed,
  type PermissionGuardArguments,
  type SaikuErrorsOptions as CoreErrorsOptions,
} from '@saiku/core/adapter'
import {
  SaikuConfigError,
  type Authenticator,
  type KeyStore,
  type SaikuPrincipal,
  type WouldBeRefusal,
} from '@saiku/core'
import { createFetchAuthenticator, toResponse, withHeaders, type SaikuFetchOptions } from './shared.js'

/** Put it in `new Hono<SaikuEnv>()` (or merge its `Variables` into yours) to type `c.get('saiku')`. */
export interface SaikuEnv {
  Variables: {
    /** Set by `saikuAuth` once the request is admitted; null when report-only authentication let it through. */
    saiku: SaikuPrincipal | null
    /** Set when report-only authentication admitted a request whose credentials failed: the refusal it would have had. */
    saikuUnverified: WouldBeRefusal | null
  }
}

/** The address Hono's `getConnInfo` of your runtime reads (`@hono/node-server/conninfo`, `hono/bun`, `hono/deno`). */
export type GetConnInfo = (c: Context) => { readonly remote: { readonly address?: string | undefined } }

export interface SaikuHonoOptions extends SaikuFetchOptions {
  /** Your runtime's `getConnInfo`: where the client address comes from when no `clientAddressHeader` is named. */
  readonly getConnInfo?: GetConnInfo | undefined
}

export interface SaikuMiddleware extends MiddlewareHandler<SaikuEnv> {
  /** The core authenticator: key management (`keys`), cache invalidation. */
  readonly authenticator: Authenticator
}

// A sub-app's mount point as Hono routes it ("/api", "/:tenant"): exemptions are matched below it.
function mountPrefix(c: Context): string | undefined {
  const base = baseRoutePath(c)
  return base === '' || base === '/' ? undefined : base
}

/**
 * Authenticates every request it is mounted on and applies the tenant's limits: a refused request is answered
 * here and never reaches a handler; an admitted one carries `c.get('saiku')`, and its response the rate-limit fields.
 */
export function saikuAuth(store: KeyStore, options: SaikuHonoOptions = {}): SaikuMiddleware {
  if (typeof options !== 'object' || options === null) throw new SaikuConfigError('options', 'an object', options)
  const { getConnInfo, ...fetchOptions } = options
  if (getConnInfo !== undefined && typeof getConnInfo !== 'function')
    throw new SaikuConfigError(
      'getConnInfo',
      "a function, such as getConnInfo from '@hono/node-server/conninfo'",
      getConnInfo,
    )
  const core = createFetchAuthenticator(store, fetchOptions)
  const middleware: MiddlewareHandler<SaikuEnv> = async (c, next) => {
    const address =
      getConnInfo === undefined
        ? () => undefined
        : () => {
            const info = syncHookValue(getConnInfo(c), 'getConnInfo(c)', 'the connection info')
            return clientAddressValue(info.remote.address, 'getConnInfo(c).remote.address')
          }
    const outcome = core.authenticate(c.req.raw, address, () => mountPrefix(c))
    const result = outcome instanceof Promise ? await outcome : outcome
    if (!result.ok) return result.response
    c.set('saiku', result.principal)
    c.set('saikuUnverified', result.unverified)
    await next()
    // After the handler: its response may be immutable (a fetched one), then it is copied.
    const response = withHeaders(c.res, result.headers)
    if (response !== c.res) c.res = response
  }
  return Object.assign(middleware, { authenticator: core.authenticator })
}

/**
 * Answers 403 unless the request's key holds every permission named (`*` and `area:*` match too). A request
 * without a principal gets a 401 challenging `realm`, from an options object after the permissions
 * (`requirePermission('keys:read', { realm })`; default "saiku").
 */
export function requirePermission(...args: PermissionGuardArguments): MiddlewareHandler<SaikuEnv> {
  const { permissions, realm } = permissionGuard(args)
  return async (c, next) => {
    const refusal = checkPermissions(c.get('saiku') ?? undefined, permissions, realm)
    if (refusal !== null) return toResponse(refusal)
    await next()
  }
}

/** `onError` may be async; what it throws or rejects with is a process warning, once per distinct message, and the JSON 500 still goes out. */
export type SaikuErrorsOptions = Omit<CoreErrorsOptions<(error: unknown, c: Context) => unknown>, 'notFound'>

/**
 * `app.onError(saikuErrors())`: a thrown error of the `SaikuError` family, or Hono's `HTTPException`, as the
 * JSON body; anything else as a 500 that reveals nothing, passed to `onError` (default `console.error`).
 * `saikuAuth` puts the rate-limit fields of an admitted request on its error answer, as on any other.
 */
export function saikuErrors(options?: SaikuErrorsOptions): ErrorHandler {
  if (options !== undefined && (typeof options !== 'object' || options === null || 'notFound' in options))
    throw new SaikuConfigError(
      'saikuErrors()',
      'an options object without notFound (use app.notFound(saikuNotFound()))',
      options,
    )
  const { realm, onError = (error: unknown) => console.error(error) } = resolveSaikuErrorsOptions(options)
  return (error, c) => {
    const principal = (c as Context<SaikuEnv>).get('saiku') ?? undefined
    const response = errorResponseFor(error, { realm, principal })
    if (response.report)
      notifyHook(
        () => onError(error, c),
        (failure) => warnHookFailed('saikuErrors().onError', failure),
      )
    return toResponse(response)
  }
}

/** `app.notFound(saikuNotFound())`: the JSON 404, after authentication, for requests no route handled. */
export function saikuNotFound(): NotFoundHandler {
  return () => toResponse(errorResponse('not_found'))
}

export type { SaikuFetchOptions } from './shared.js'
export type { PermissionGuardOptions } from '@saiku/core/adapter'
