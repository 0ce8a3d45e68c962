import { ERROR_STATUS, isSaikuError, SaikuConfigError, type WireCode } from './errors.js'
import {
  BODY_HEADERS,
  bearerChallenge,
  checkRealm,
  DEFAULT_REALM,
  errorResponse,
  type ErrorResponse,
  type HeaderMap,
} from './http.js'
import type { SaikuPrincipal } from './decision.js'

const CODE_BY_STATUS: Readonly<Record<number, WireCode>> = Object.fromEntries(
  Object.entries(ERROR_STATUS).map(([code, status]) => [status, code as WireCode]),
)

/** What an adapter's error handler writes for a thrown error, and whether it passes the error on to `onError`. */
export interface ThrownErrorResponse extends ErrorResponse {
  /** True for a 5xx: something broke (a bug, a store) and someone should hear of it. */
  readonly report: boolean
}

export interface ErrorResponseOptions {
  /** The realm of a 401's challenge. Default `"saiku"`. */
  readonly realm?: string | undefined
  /** The request's principal, if any: its realm wins over `realm`. */
  readonly principal?: SaikuPrincipal | undefined
  /**
   * The methods the request's path answers (a router's matched routes): a thrown 405 whose
   * `headers` carry no `Allow` gets one from them (RFC 9110 §15.5.6 requires it).
   */
  readonly allowedMethods?: readonly string[] | undefined
}

// What the error body itself sets; a thrown error's headers never replace these.
const OWN_HEADERS = new Set([...BODY_HEADERS, 'content-type', 'cache-control', 'transfer-encoding'])
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
// A value Node writes without throwing: no control characters but tab.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/

/**
 * The headers a thrown framework error carries (`err.headers`, as http-errors and Koa's
 * `ctx.throw` set them, and as Koa and Express write them), less the body's own and any
 * Node would refuse to write: a bad header never turns an error reply into a crash.
 */
function thrownHeaders(error: object): HeaderMap {
  const { headers } = error as { headers?: unknown }
  const kept: Record<string, string> = {}
  if (typeof headers !== 'object' || headers === null) return kept
  for (const [name, value] of Object.entries(headers as Record<string, unknown>)) {
    const lower = name.toLowerCase()
    if (!TOKEN.test(name) || OWN_HEADERS.has(lower) || lower === 'set-cookie') continue
    const text: unknown = Array.isArray(value) ? value.join(', ') : typeof value === 'number' ? String(value) : value
    if (typeof text === 'string' && FIELD_VALUE.test(text)) kept[lower] = text
  }
  return kept
}

/** `Allow` for a 405 that lacks one, from the methods the path answers; empty when they are unknown. */
function allowHeader(headers: HeaderMap, allowedMethods: readonly string[] | undefined): HeaderMap {
  if ('allow' in headers || allowedMethods === undefined || allowedMethods.length === 0) return {}
  const methods = [...new Set(allowedMethods.map((method) => method.toUpperCase()))].filter((m) => TOKEN.test(m))
  return methods.length === 0 ? {} : { allow: methods.join(', ') }
}

function reply(response: ErrorResponse): ThrownErrorResponse {
  return { ...response, report: response.status >= 500 }
}

// What errorResponseFor answers, unguarded.
function respondTo(error: unknown, options: ErrorResponseOptions): ThrownErrorResponse {
  // A 401 must carry a challenge (RFC 9110 §15.5.2), even one a handler threw.
  const challenge = (): Record<string, string> => ({
    'www-authenticate': bearerChallenge(options.principal?.realm ?? options.realm ?? DEFAULT_REALM),
  })
  if (isSaikuError(error)) {
    switch (error.code) {
      case 'ERR_SAIKU_HTTP':
        return reply(
          errorResponse(error.wireCode, error.message, {
            ...(error.wireCode === 'unauthorized' ? challenge() : undefined),
            ...error.headers,
          }),
        )
      case 'ERR_SAIKU_INVALID_INPUT':
        return reply(errorResponse('invalid_request', error.message))
      case 'ERR_SAIKU_NOT_FOUND':
        return reply(errorResponse('not_found', error.message))
      case 'ERR_SAIKU_PERMISSION_DENIED':
        return reply(errorResponse('forbidden', error.message))
      // Every failed credential gets the same body.
      case 'ERR_SAIKU_CREDENTIAL_EXPIRED':
        return reply(errorResponse('unauthorized', undefined, challenge()))
      // A store that failed or stayed locked (a handler's own call, or key management) is unavailable, not broken: 503.
      case 'ERR_SAIKU_STORE':
        return reply(errorResponse('service_unavailable'))
      // A misconfiguration met while answering (a handler built something at request time) is a bug: 500.
      case 'ERR_SAIKU_CONFIG':
        return reply(errorResponse('internal_error'))
    }
  }
  const client = typeof error === 'object' && error !== null ? clientError(error, options, challenge) : null
  return reply(client ?? errorResponse('internal_error'))
}

/**
 * Turns anything a handler threw into the standard JSON error. A SaikuHttpError
 * keeps its wire code and message; the family's other errors get theirs (an input
 * error is a 400, a missing resource a 404, a permission a 403, an expired
 * credential a 401, a store failure a 503); a framework's client error (bad JSON,
 * body too large: `status` or `statusCode` 4xx, unless `expose` is false) keeps its status; everything else
 * is a 500 whose message reveals nothing. Every 401 challenges the principal's
 * realm, else `options.realm`.
 */
export function errorResponseFor(error: unknown, options: ErrorResponseOptions = {}): ThrownErrorResponse {
  try {
    return respondTo(error, options)
  } catch {
    // A thrown value whose properties throw when read: nothing in it can be trusted, so it is the plain 500.
    return reply(errorResponse('internal_error'))
  }
}

/** A framework's client error (4xx) as its JSON error, or null for anything else. */
function clientError(
  error: object,
  options: ErrorResponseOptions,
  challenge: () => Record<string, string>,
): ErrorResponse | null {
  const { status, statusCode, expose, type, code: frameworkCode } = error as Record<string, unknown>
  const httpStatus = typeof status === 'number' ? status : statusCode
  if (typeof httpStatus !== 'number' || httpStatus < 400 || httpStatus >= 500 || expose === false) return null
  const code = CODE_BY_STATUS[httpStatus] ?? 'invalid_request'
  const headers = thrownHeaders(error)
  // body-parser's (Express, Koa) and Fastify's names for a JSON body that does not parse.
  if (type === 'entity.parse.failed' || frameworkCode === 'FST_ERR_CTP_INVALID_JSON_BODY')
    return errorResponse('invalid_request', 'The request body is not valid JSON.', headers)
  if (code === 'method_not_allowed') Object.assign(headers, allowHeader(headers, options.allowedMethods))
  // A 401 must carry a challenge: the framework's own if it sent one that can go out, else the realm's.
  if (code === 'unauthorized' && !('www-authenticate' in headers)) Object.assign(headers, challenge())
  return errorResponse(code, undefined, headers)
}

/**
 * The JSON error for a 4xx that a framework or router set without a body (@koa/router's
 * `allowedMethods()` 405, whose `Allow` stays on the response), or null to leave the response
 * as it is: a status without a wire code, and a 401, whose challenge only its setter knows.
 */
export function errorResponseForStatus(status: number): ErrorResponse | null {
  const code = CODE_BY_STATUS[status]
  if (code === undefined || status < 400 || status >= 500 || code === 'unauthorized') return null
  return errorResponse(code)
}

/** The options both adapters' `saikuErrors()` take; `onError`'s arguments are the framework's. */
export interface SaikuErrorsOptions<OnError> {
  /** Answer requests no route handled with the JSON 404. Default true. */
  readonly notFound?: boolean | undefined
  /** The realm of a thrown 401's challenge when the request has no principal (the principal's own realm wins). Default `"saiku"`. */
  readonly realm?: string | undefined
  /**
   * Receives every error answered with a 5xx. It may be async and is not awaited: what it throws or rejects
   * with leaves the JSON 500 as it was and becomes a process warning (`SAIKU_HOOK_FAILED`), once per distinct message.
   */
  readonly onError?: OnError | undefined
}

export interface ResolvedSaikuErrorsOptions<OnError> {
  readonly notFound: boolean
  readonly realm: string
  readonly onError: OnError | undefined
}

/** Checks the options of an adapter's `saikuErrors()` once, when it is built: a SaikuConfigError names a bad one. */
export function resolveSaikuErrorsOptions<OnError>(
  options: SaikuErrorsOptions<OnError> = {},
): ResolvedSaikuErrorsOptions<OnError> {
  if (typeof options !== 'object' || options === null)
    throw new SaikuConfigError('saikuErrors()', 'an options object', options)
  const { notFound = true, onError } = options
  if (typeof notFound !== 'boolean') throw new SaikuConfigError('saikuErrors().notFound', 'a boolean', notFound)
  if (onError !== undefined && typeof onError !== 'function')
    throw new SaikuConfigError('saikuErrors().onError', 'a function', onError)
  return Object.freeze({ notFound, realm: checkRealm('saikuErrors().realm', options.realm), onError })
}
