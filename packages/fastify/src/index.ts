import type { FastifyPluginCallback, FastifyReply, FastifyRequest, preHandlerHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import {
  BODY_HEADERS,
  checkPermissions,
  endStartedResponse,
  errorResponse,
  errorResponseFor,
  notifyHook,
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

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by `saikuAuth` once the request is admitted; null before it ran or when report-only let a request through. */
    saiku: SaikuPrincipal | null
    /** Set instead of `saiku` when report-only authentication admitted a request whose credentials failed: the refusal it would have had. */
    saikuUnverified: WouldBeRefusal | null
  }
}

export interface SaikuPlugin extends FastifyPluginCallback {
  /** The core authenticator: key management (`keys`), cache invalidation. */
  readonly authenticator: Authenticator
}

function send(reply: FastifyReply, response: ErrorResponse): void {
  for (const name of BODY_HEADERS) reply.removeHeader(name)
  reply.code(response.status).headers(response.headers).send(response.body)
}

// One declaration per app, whichever instance or context registers first: a second would throw.
function decorate(fastify: Parameters<FastifyPluginCallback>[0]): void {
  if (!fastify.hasRequestDecorator('saiku')) fastify.decorateRequest('saiku', null)
  if (!fastify.hasRequestDecorator('saikuUnverified')) fastify.decorateRequest('saikuUnverified', null)
}

/**
 * Authenticates every request of the context it is registered in (and its children) in
 * `onRequest`, before the body is parsed, and applies the tenant's limits (Fastify 5).
 */
export function saikuAuth(store: KeyStore, options?: SaikuOptions): SaikuPlugin {
  const authenticator = createAuthenticator(store, options)
  const plugin: FastifyPluginCallback = (fastify, _options, done) => {
    decorate(fastify)
    // Routes below a prefix see it in request.url: exemptions are matched below it.
    const mountPrefix = fastify.prefix === '' ? undefined : fastify.prefix
    // Returns true when the request may go on; writes the refusal otherwise.
    const apply = (request: FastifyRequest, reply: FastifyReply, decision: AuthDecision): boolean => {
      if (!decision.ok) {
        // Report-only authentication: the refusal is not sent, and the request goes on without a principal.
        if ('unverified' in decision) {
          request.saikuUnverified = decision.unverified
          return true
        }
        send(reply, decision)
        return false
      }
      // A preflight passed on to the CORS layer: no principal, nothing to set.
      if (decision.principal === null) return true
      reply.headers(decision.headers)
      request.saiku = decision.principal
      return true
    }
    fastify.addHook('onRequest', (request, reply, next) => {
      const { raw } = request
      const outcome = authenticator.check({
        headers: raw.headers,
        rawHeaders: raw.rawHeaders,
        method: request.method,
        url: request.url,
        mountedUrl: request.url,
        mountPrefix,
        ip: () => request.ip,
        principal: request.saiku ?? undefined,
        unverified: request.saikuUnverified,
      })
      if (!(outcome instanceof Promise)) return void (apply(request, reply, outcome) && next())
      // next() runs outside the chain that catches, so it is called at most once.
      outcome.then((decision) => apply(request, reply, decision)).then((admitted) => admitted && next(), next)
    })
    done()
  }
  return Object.assign(fp(plugin, { fastify: '5.x', name: '@saiku/fastify' }), { authenticator })
}

/**
 * A `preHandler` that answers 403 unless the request's key holds every permission named.
 * A request without a principal gets a 401 challenging `realm`, from an options object
 * after the permissions (`requirePermission('keys:read', { realm })`; default "saiku").
 */
export function requirePermission(...args: PermissionGuardArguments): preHandlerHookHandler {
  const { permissions, realm } = permissionGuard(args)
  return (request, reply, done) => {
    const refusal = checkPermissions(request.saiku ?? undefined, permissions, realm)
    if (refusal === null) done()
    else send(reply, refusal)
  }
}

/** `onError` may be async; what it throws or rejects with is a process warning, once per distinct message, and the JSON 500 still goes out. */
export type SaikuErrorsOptions = CoreErrorsOptions<(error: unknown, request: FastifyRequest) => unknown>

/**
 * Sets the error and not-found handlers of the context it is registered in: answers
 * requests no route handled with the JSON 404 (unless `notFound: false`) and writes a
 * thrown error as the JSON error body (a 500 that reveals nothing for anything
 * unexpected, passed to `onError`, default: logged with `request.log.error`). An error
 * after the response started is reported and the connection closed.
 */
export function saikuErrors(options?: SaikuErrorsOptions): FastifyPluginCallback {
  const {
    notFound,
    realm,
    onError = (error: unknown, request: FastifyRequest) => request.log.error({ err: error }, 'request failed'),
  } = resolveSaikuErrorsOptions(options)
  const report = (error: unknown, request: FastifyRequest): void =>
    notifyHook(
      () => onError(error, request),
      (failure) => warnHookFailed('saikuErrors().onError', failure),
    )
  const plugin: FastifyPluginCallback = (fastify, _options, done) => {
    decorate(fastify)
    fastify.setErrorHandler((error, request, reply) => {
      if (reply.raw.headersSent) {
        report(error, request)
        return endStartedResponse(reply.raw)
      }
      const response = errorResponseFor(error, { realm, principal: request.saiku ?? undefined })
      if (response.report) report(error, request)
      send(reply, response)
    })
    if (notFound) fastify.setNotFoundHandler((_request, reply) => send(reply, errorResponse('not_found')))
    done()
  }
  return fp(plugin, { fastify: '5.x', name: '@saiku/fastify/errors' })
}

export { MemoryKeyStore, ownedByTenant, hasPermission, SaikuHttpError } from '@saiku/core'
export type { KeyStore, SaikuOptions, SaikuPrincipal, TenantRecord, WouldBeRefusal } from '@saiku/core'
export type { PermissionGuardOptions } from '@saiku/core/adapter'
