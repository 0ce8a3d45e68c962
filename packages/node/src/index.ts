import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http'
import {
  addressFromHeader,
  checkPermissions,
  clientAddressValue,
  endStartedResponse,
  errorResponseFor,
  notifyHook,
  permissionGuard,
  resolveClientAddressHeader,
  resolveSaikuErrorsOptions,
  warnHookFailed,
  writeErrorResponse,
  type AuthDecision,
  type PermissionGuardArguments,
  type SaikuErrorsOptions as CoreErrorsOptions,
} from '@saiku/core/adapter'
import {
  createAuthenticator,
  SaikuConfigError,
  type Authenticator,
  type KeyStore,
  type SaikuOptions,
  type SaikuPrincipal,
  type WouldBeRefusal,
} from '@saiku/core'

/**
 * `saikuAuth`'s options: those of `@saiku/core`, and where the client address comes from behind proxies
 * of yours. Default: `req.socket.remoteAddress`, never a header.
 */
export interface SaikuNodeOptions extends SaikuOptions {
  /**
   * A header your proxies append the client's address to (`"x-forwarded-for"`): the address is the
   * entry `proxyHops` from the right, never one the client wrote further left. Without that entry (no
   * header, not an address), the socket's address.
   */
  readonly clientAddressHeader?: string | undefined
  /** How many proxies of yours append to `clientAddressHeader`. Default 1. */
  readonly proxyHops?: number | undefined
  /** Or a function that names the client address, read synchronously and only when the core needs it. */
  readonly clientAddress?: ((req: IncomingMessage) => string | undefined) | undefined
}

type AddressOf = (req: IncomingMessage) => string | undefined

/**
 * Resolves to the principal of an admitted request (its `RateLimit` headers already set on `res`);
 * to `undefined` when the refusal has been written and the caller must stop; to `null` when the request
 * goes on without a principal: report-only authentication let failing credentials through
 * (`saikuUnverified(req)` tells the refusal), or the core's `preflight: 'pass'` let a CORS preflight through.
 */
export interface SaikuNodeAuth {
  (req: IncomingMessage, res: ServerResponse): Promise<SaikuPrincipal | null | undefined>
  /** The core authenticator: key management (`keys`), cache invalidation. */
  readonly authenticator: Authenticator
}

// What a request was given, for a second call on it (nested helpers) and for saikuErrors: Express's req.saiku.
const principals = new WeakMap<IncomingMessage, SaikuPrincipal>()
const unverifiedRefusals = new WeakMap<IncomingMessage, WouldBeRefusal>()
const answered = new WeakSet<IncomingMessage>()

// The address options are this adapter's own: the core gets the rest, and checks it.
function splitOptions(options: SaikuNodeOptions | undefined): [SaikuOptions | undefined, AddressOf | undefined] {
  if (typeof options !== 'object' || options === null) return [options, undefined]
  if (!('clientAddress' in options || 'clientAddressHeader' in options || 'proxyHops' in options))
    return [options, undefined]
  const { clientAddress, clientAddressHeader, proxyHops, ...core } = options
  const header = resolveClientAddressHeader(clientAddressHeader, proxyHops)
  if (clientAddress !== undefined && typeof clientAddress !== 'function')
    throw new SaikuConfigError('clientAddress', 'a function (req) => string | undefined', clientAddress)
  if (clientAddress !== undefined && header !== null)
    throw new SaikuConfigError('clientAddress', 'no function beside clientAddressHeader', clientAddress)
  if (header !== null) {
    const { name, hops } = header
    return [core, (req) => addressFromHeader(headerValue(req.headers[name]), hops) ?? req.socket.remoteAddress]
  }
  return [core, clientAddress === undefined ? undefined : (req) => readAddress(clientAddress, req)]
}

// Node joins repeated lines of most headers with commas; a few it keeps as a list.
function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(',') : value
}

// The core reads the address synchronously: a promise (an async clientAddress) is a misconfiguration, answered 500.
function readAddress(clientAddress: AddressOf, req: IncomingMessage): string | undefined {
  return clientAddressValue(clientAddress(req), 'clientAddress(req)')
}

/** Authenticates a request of a plain `node:http` server and applies the tenant's limits. */
export function saikuAuth(store: KeyStore, options?: SaikuNodeOptions): SaikuNodeAuth {
  const [coreOptions, addressOf] = splitOptions(options)
  const authenticator = createAuthenticator(store, coreOptions)
  const apply = (
    req: IncomingMessage,
    res: ServerResponse,
    decision: AuthDecision,
  ): SaikuPrincipal | null | undefined => {
    if (!decision.ok) {
      // Report-only authentication: the refusal is not sent, and the request goes on without a principal.
      if ('unverified' in decision) {
        unverifiedRefusals.set(req, decision.unverified)
        return null
      }
      answered.add(req)
      writeErrorResponse(res, decision)
      return undefined
    }
    // Admitted without a principal (a CORS preflight the core passes on): go on, nothing to set.
    if (decision.principal === null) return null
    for (const name in decision.headers) res.setHeader(name, decision.headers[name]!)
    principals.set(req, decision.principal)
    return decision.principal
  }
  const auth = async (req: IncomingMessage, res: ServerResponse): Promise<SaikuPrincipal | null | undefined> => {
    // A request already refused was answered: a second call neither counts it again nor writes twice.
    if (answered.has(req)) return undefined
    const outcome = authenticator.check({
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      method: req.method!,
      url: req.url!,
      ip: addressOf === undefined ? () => req.socket.remoteAddress : () => addressOf(req),
      principal: principals.get(req),
      // Read only under report-only authentication: a request let through is not counted again.
      get unverified() {
        return unverifiedRefusals.get(req)
      },
    })
    return apply(req, res, outcome instanceof Promise ? await outcome : outcome)
  }
  return Object.assign(auth, { authenticator })
}

/** The refusal report-only authentication would have sent for this request, when it let it through without one. */
export function saikuUnverified(req: IncomingMessage): WouldBeRefusal | undefined {
  return unverifiedRefusals.get(req)
}

/** Returns true when the principal may go on; writes the 401 or 403 on `res` and returns false otherwise. */
export type PermissionCheck = (principal: SaikuPrincipal | null | undefined, res: ServerResponse) => boolean

/**
 * A check, built once, that answers 403 unless the request's key holds every permission named.
 * A request without a principal gets a 401 challenging `realm`, from an options object after
 * the permissions (`requirePermission('keys:read', { realm })`; default "saiku").
 */
export function requirePermission(...args: PermissionGuardArguments): PermissionCheck {
  const { permissions, realm } = permissionGuard(args)
  return (principal, res) => {
    const refusal = checkPermissions(principal ?? undefined, permissions, realm)
    if (refusal === null) return true
    writeErrorResponse(res, refusal)
    return false
  }
}

/**
 * `saikuErrors`' options, without `notFound`: a server without a router has no unhandled route to
 * answer (throw `new SaikuHttpError('not_found')` for a path you do not serve). `onError` may be
 * async; what it throws or rejects with is a process warning, once per distinct message.
 */
export type SaikuErrorsOptions = Omit<CoreErrorsOptions<(error: unknown, req: IncomingMessage) => unknown>, 'notFound'>

/** Answers a thrown error on `res`: what `saikuErrors()` returns. */
export type SaikuErrorWriter = (error: unknown, req: IncomingMessage, res: ServerResponse) => void

/**
 * Writes a thrown error as the JSON error body: a `SaikuError` or a client error with its status,
 * anything else a 500 that reveals nothing, passed to `onError` (default `console.error`). An error
 * after the response started is reported and the connection closed.
 */
export function saikuErrors(options?: SaikuErrorsOptions): SaikuErrorWriter {
  if (typeof options === 'object' && options !== null && 'notFound' in options)
    throw new SaikuConfigError(
      'saikuErrors().notFound',
      'no such option: a node:http server has no router, so throw SaikuHttpError("not_found") instead',
      options.notFound,
    )
  const { realm, onError = (error: unknown) => console.error(error) } = resolveSaikuErrorsOptions(options)
  const report = (error: unknown, req: IncomingMessage): void =>
    notifyHook(
      () => onError(error, req),
      (failure) => warnHookFailed('saikuErrors().onError', failure),
    )
  return (error, req, res) => {
    if (res.headersSent) {
      // Too late for an error body: report it once and cut the connection.
      report(error, req)
      return endStartedResponse(res)
    }
    const response = errorResponseFor(error, { realm, principal: principals.get(req) })
    if (response.report) report(error, req)
    writeErrorResponse(res, response)
  }
}

/** Your handler behind `withSaiku`: `principal` is null when a request goes on without one (report-only, a passed preflight). */
export type SaikuRequestHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  principal: SaikuPrincipal | null,
) => unknown

/**
 * A `node:http` request listener: authenticates each request with `auth`, calls `handler` with
 * the principal of an admitted one, and answers what the handler throws or rejects with through
 * `saikuErrors(options)`.
 */
export function withSaiku(
  auth: SaikuNodeAuth,
  handler: SaikuRequestHandler,
  options?: SaikuErrorsOptions,
): RequestListener {
  if (typeof auth !== 'function' || typeof auth.authenticator !== 'object')
    throw new SaikuConfigError('withSaiku(auth)', 'what saikuAuth(store, options) returns', auth)
  if (typeof handler !== 'function') throw new SaikuConfigError('withSaiku(handler)', 'a function', handler)
  const answerError = saikuErrors(options)
  return (req, res) => {
    auth(req, res)
      .then((principal) => (principal === undefined ? undefined : handler(req, res, principal)))
      .catch((error: unknown) => answerError(error, req, res))
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
