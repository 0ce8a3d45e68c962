import type { ErrorCode } from './errors.js'
import { bearerChallenge, bindingWindow, errorResponse, retryAfterSeconds, type ErrorResponse, type HeaderMap } from './http.js'
import type { LimitDecision } from './limiter.js'
import type { WindowLimits } from './tiers.js'

const SIGNED_TOKEN_MESSAGE = 'Access token invalid, expired or revoked.'
export const INVALID_REQUEST_MESSAGE = 'Send exactly one API key, in one Authorization header: "Authorization: Bearer <key>".'

/** The refusals of one realm: the challenges, and the responses that floods are made of built once. */
export interface Refusals {
  /** No credentials: a challenge without an error. */
  readonly missing: HeaderMap
  readonly invalidToken: HeaderMap
  /** The same challenge for a signed token, whose body names the token rather than an API key. */
  readonly invalidSignedToken: HeaderMap
  readonly invalidRequest: HeaderMap
  /** The response for `code`: a prebuilt one for the common 401s (adapters only read it), else a new one. */
  response(code: ErrorCode, message?: string, headers?: HeaderMap): ErrorResponse
}

export function createRefusals(realm: string): Refusals {
  const missing = { 'www-authenticate': bearerChallenge(realm) }
  const invalidToken = { 'www-authenticate': bearerChallenge(realm, 'invalid_token') }
  const invalidSignedToken = { ...invalidToken }
  const invalidRequest = { 'www-authenticate': bearerChallenge(realm, 'invalid_request') }
  const prebuilt = new Map<HeaderMap, ErrorResponse>([
    [missing, Object.freeze(errorResponse('unauthorized', undefined, missing))],
    [invalidToken, Object.freeze(errorResponse('unauthorized', undefined, invalidToken))],
    [invalidSignedToken, Object.freeze(errorResponse('unauthorized', SIGNED_TOKEN_MESSAGE, invalidSignedToken))],
  ])
  return {
    missing,
    invalidToken,
    invalidSignedToken,
    invalidRequest,
    response(code, message, headers) {
      return (code === 'unauthorized' && message === undefined && headers !== undefined && prebuilt.get(headers)) || errorResponse(code, message, headers)
    },
  }
}

export function tooManyFailuresMessage(retryAfter: number): string {
  return `Too many failed authentication attempts from this address. Retry in ${retryAfter} s.`
}

/** The 429 of a spent window: what it allows, what this request costs, when to come back. */
export function rateLimitedMessage(rateLimit: LimitDecision, cost: number): string {
  const binding = bindingWindow(rateLimit, cost)
  const costs = cost === 1 ? '' : ` This request costs ${cost}; ${binding.remaining} left.`
  return `Rate limit exceeded: ${binding.limit} requests per ${binding.window}.${costs} Retry in ${retryAfterSeconds(rateLimit)} s.`
}

/** A cost no window can ever hold: a refusal that says so, with no Retry-After to wait out. */
export function costExceedsLimitMessage(limits: WindowLimits, cost: number): string {
  const [limit, window] = cost > limits.perMinute ? [limits.perMinute, 'minute'] : [limits.perHour, 'hour']
  return `This request costs ${cost} units, more than the ${limit} per ${window} this plan allows: it can never be admitted.`
}
