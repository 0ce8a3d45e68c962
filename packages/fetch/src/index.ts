import {
  checkPermissions,
  clientAddressValue,
  errorResponseFor,
  notifyHook,
  permissionGuard,
  resolveSaikuErrorsOptions,
  warnHookFailed,
  type PermissionGuardArguments,
  type SaikuErrorsOptions as CoreErrorsOptions,
} from '@saiku/core/adapter'
import { SaikuConfigError, type KeyStore, type SaikuPrincipal } from '@saiku/core'
import {
  createFetchAuthenticator,
  isResponse,
  toResponse,
  withHeaders,
  type SaikuFetchAuth,
  type SaikuFetchOptions,
  type SaikuFetchResult,
  type SaikuRequestInfo,
} from './shared.js'

/**
 * Authenticates a Fetch API request and applies the tenant's limits: `{ ok: false, response }` to return as it
 * is, or `{ ok: true, principal, headers }` with the rate-limit fields for the handler's response. One per
 * app, shared by every route: each call of `saikuAuth` has its own cache and limiter.
 */
export function saikuAuth(store: KeyStore, options?: SaikuFetchOptions): SaikuFetchAuth {
  const core = createFetchAuthenticator(store, options)
  const auth = async (request: Request, info?: SaikuRequestInfo): Promise<SaikuFetchResult> => {
    // Checked now, needed or not: a promise here (an async clientAddress) would otherwise reject unobserved.
    const address = clientAddressValue(info?.clientAddress, 'clientAddress')
    return core.authenticate(request, () => address)
  }
  return Object.assign(auth, { authenticator: core.authenticator })
}

/** What `withSaiku` calls for an admitted request; `principal` is null only when report-only authentication or `preflight: 'pass'` let it through. */
export type SaikuHandler<Info> = (
  request: Request,
  principal: SaikuPrincipal | null,
  info: Info,
) => Response | Promise<Response>

export interface WithSaikuOptions<Info> extends Omit<
  CoreErrorsOptions<(error: unknown, request: Request) => unknown>,
  'notFound'
> {
  /** The client address from what the host passes beside the request (Deno's `info`, Bun's `server`). */
  readonly clientAddress?: ((request: Request, info: Info) => string | undefined) | undefined
}

/**
 * A Fetch handler (Bun.serve, Deno.serve, a Next.js route handler) behind `auth`: a refused request gets its
 * refusal, an admitted one the handler's response with the rate-limit fields. What the handler throws is
 * answered as JSON: a `SaikuError` by its code, anything else as a 500 that reveals nothing, passed to
 * `onError` (default `console.error`).
 */
export function withSaiku<Info = unknown>(
  auth: SaikuFetchAuth,
  handler: SaikuHandler<Info>,
  options: WithSaikuOptions<Info> = {},
): (request: Request, info: Info) => Promise<Response> {
  if (typeof auth !== 'function' || typeof auth.authenticator !== 'object')
    throw new SaikuConfigError('withSaiku(auth)', 'what saikuAuth(store, options) returns', auth)
  if (typeof handler !== 'function') throw new SaikuConfigError('withSaiku(handler)', 'a function', handler)
  const { clientAddress } = options
  if (clientAddress !== undefined && typeof clientAddress !== 'function')
    throw new SaikuConfigError('withSaiku().clientAddress', 'a function', clientAddress)
  const { realm, onError = (error: unknown) => console.error(error) } = resolveSaikuErrorsOptions({
    realm: options.realm ?? auth.authenticator.options.realm,
    onError: options.onError,
  })
  const failed = (error: unknown, request: Request, principal: SaikuPrincipal | null): Response => {
    const response = errorResponseFor(error, { realm, principal: principal ?? undefined })
    if (response.report)
      notifyHook(
        () => onError(error, request),
        (failure) => warnHookFailed('withSaiku().onError', failure),
      )
    return toResponse(response)
  }
  return async (request, info) => {
    let admitted: SaikuFetchResult | undefined
    try {
      const result = await auth(
        request,
        clientAddress === undefined ? undefined : { clientAddress: clientAddress(request, info) },
      )
      if (!result.ok) return result.response
      admitted = result
      const response: unknown = await handler(request, result.principal, info)
      if (!isResponse(response)) throw new TypeError(`the handler returned ${typeof response}, not a Response`)
      return withHeaders(response, result.headers)
    } catch (error) {
      // An error answer to an admitted request still says what it spent, as the other adapters' do.
      if (admitted === undefined || !admitted.ok) return failed(error, request, null)
      return withHeaders(failed(error, request, admitted.principal), admitted.headers)
    }
  }
}

/**
 * A check for a handler: the 403 refusal unless the principal holds every permission named
 * (`*` and `area:*` match too), null when it does. Without a principal, a 401 challenging `realm`,
 * from an options object after the permissions (`requirePermission('keys:read', { realm })`; default "saiku").
 */
export function requirePermission(
  ...args: PermissionGuardArguments
): (principal: SaikuPrincipal | null) => Response | null {
  const { permissions, realm } = permissionGuard(args)
  return (principal) => {
    const refusal = checkPermissions(principal ?? undefined, permissions, realm)
    return refusal === null ? null : toResponse(refusal)
  }
}

export { unverifiedOf } from './shared.js'
export type {
  SaikuAdmitted,
  SaikuFetchAuth,
  SaikuFetchOptions,
  SaikuFetchResult,
  SaikuPassed,
  SaikuRefused,
  SaikuRequestInfo,
  SaikuUnverified,
} from './shared.js'
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
