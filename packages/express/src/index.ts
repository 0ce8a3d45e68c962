import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express'
import {
  checkPermissions,
  errorResponse,
  errorResponseFor,
  notifyHook,
  permissionGuard,
  resolveSaikuErrorsOptions,
  warnHookFailed,
  writeErrorResponse,
  type AuthDecision,
  type AuthRequest,
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

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Set by `saikuAuth` once the request is admitted. */
      saiku?: SaikuPrincipal
      /** Set instead of `saiku` when report-only authentication admitted a request whose credentials failed: the refusal it would have had. */
      saikuUnverified?: WouldBeRefusal
    }
  }
}

export interface SaikuMiddleware extends RequestHandler {
  /** The core authenticator: key management (`keys`), cache invalidation. */
  readonly authenticator: Authenticator
}

/**
 * The request as the core reads it. Express 5 sets the prototype of every request, which
 * leaves each property read on `req` a slow lookup: what every decision needs is read
 * once here, the rest (method, mounted URL, address) only if the core asks.
 */
class ExpressAuthRequest implements AuthRequest {
  readonly headers: AuthRequest['headers']
  readonly rawHeaders: readonly string[]
  readonly url: string
  /** An own `req.saiku`: set by a saikuAuth that admitted this request already. */
  readonly principal: SaikuPrincipal | undefined
  readonly #req: Request

  constructor(req: Request) {
    this.headers = req.headers
    this.rawHeaders = req.rawHeaders
    this.url = req.originalUrl
    this.principal = Object.hasOwn(req, 'saiku') ? req.saiku : undefined
    this.#req = req
  }

  get method(): string {
    return this.#req.method
  }

  /** Below the mount point, as this router's routes see it: what exemptions match. */
  get mountedUrl(): string {
    return this.#req.url
  }

  /** Set by a saikuAuth that let this request through under report-only authentication: read only then. */
  get unverified(): WouldBeRefusal | undefined {
    return this.#req.saikuUnverified
  }

  /** Express resolves it through its proxy settings on every access. */
  get ip(): string | undefined {
    return this.#req.ip
  }
}

/** Authenticates every request and applies the tenant's limits (Express 4 and 5). */
export function saikuAuth(store: KeyStore, options?: SaikuOptions): SaikuMiddleware {
  const authenticator = createAuthenticator(store, options)
  // Returns true when the request may go on; writes the refusal otherwise.
  const apply = (req: Request, res: Response, decision: AuthDecision): boolean => {
    if (!decision.ok) {
      // Report-only authentication: the refusal is not sent, and the request goes on without a principal.
      if ('unverified' in decision) {
        req.saikuUnverified = decision.unverified
        return true
      }
      writeErrorResponse(res, decision)
      return false
    }
    // A preflight passed on to the CORS layer: no principal, nothing to set.
    if (decision.principal === null) return true
    for (const name in decision.headers) res.setHeader(name, decision.headers[name]!)
    req.saiku = decision.principal
    return true
  }
  const middleware: RequestHandler = (req, res, next) => {
    const outcome = authenticator.check(new ExpressAuthRequest(req))
    if (outcome instanceof Promise) {
      // next() runs outside the chain that catches, so it is called at most once.
      outcome.then((decision) => apply(req, res, decision)).then((admitted) => admitted && next(), next)
      return
    }
    let admitted: boolean
    try {
      admitted = apply(req, res, outcome)
    } catch (error) {
      return next(error)
    }
    if (admitted) next()
  }
  return Object.assign(middleware, { authenticator })
}

/**
 * Answers 403 unless the request's key holds every permission named. A request
 * without a principal gets a 401 challenging `realm`, from an options object after
 * the permissions (`requirePermission('keys:read', { realm })`; default "saiku").
 */
export function requirePermission(...args: PermissionGuardArguments): RequestHandler {
  const { permissions, realm } = permissionGuard(args)
  return (req, res, next) => {
    const refusal = checkPermissions(req.saiku, permissions, realm)
    if (refusal === null) next()
    else writeErrorResponse(res, refusal)
  }
}

/** `onError` may be async; what it throws or rejects with is a process warning, once per distinct message, and the JSON 500 still goes out. */
export type SaikuErrorsOptions = CoreErrorsOptions<(error: unknown, req: Request) => unknown>

/**
 * Mount last, after every route: answers requests no route handled with the JSON
 * 404 (unless `notFound: false`) and writes a thrown error as the JSON error body
 * (a 500 that reveals nothing for anything unexpected, passed to `onError`,
 * default `console.error`). Returns the handlers for one `app.use(...)`.
 */
export function saikuErrors(options?: SaikuErrorsOptions): Array<RequestHandler | ErrorRequestHandler> {
  const { notFound, realm, onError = (error: unknown) => console.error(error) } = resolveSaikuErrorsOptions(options)
  const onErrorFailed = (failure: unknown): void => warnHookFailed('saikuErrors().onError', failure)
  const errorHandler: ErrorRequestHandler = (error, req, res, next) => {
    if (res.headersSent) return next(error)
    const response = errorResponseFor(error, { realm, principal: req.saiku })
    if (response.report) notifyHook(() => onError(error, req), onErrorFailed)
    writeErrorResponse(res, response)
  }
  const notFoundHandler: RequestHandler = (_req, res) => writeErrorResponse(res, errorResponse('not_found'))
  return notFound ? [notFoundHandler, errorHandler] : [errorHandler]
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
