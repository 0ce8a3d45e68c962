import { DEFAULT_MESSAGES, ERROR_STATUS, SaikuConfigError, type WireCode } from './errors.js'
import type { LimitDecision, WindowState } from './limiter.js'
import type { WindowLimits } from './tiers.js'

/**
 * Which rate-limit fields go on responses:
 * - `draft-11`: `RateLimit-Policy` and `RateLimit` of draft-ietf-httpapi-ratelimit-headers-11
 * - `legacy`: `X-RateLimit-{Limit,Remaining}-{Minute,Hour}` and `X-RateLimit-Reset` (seconds)
 * - `none`: neither (`Retry-After` still goes on every 429)
 */
export type RateLimitHeaderMode = 'draft-11' | 'legacy' | 'none'
export const RATE_LIMIT_HEADER_MODES: readonly RateLimitHeaderMode[] = Object.freeze(['draft-11', 'legacy', 'none'])

export type HeaderMap = Record<string, string>

/** A response the adapter writes as it is. */
export interface ErrorResponse {
  readonly ok: false
  readonly status: number
  readonly code: WireCode
  readonly headers: HeaderMap
  /** Serialized `{"error": code, "message": text}`. */
  readonly body: string
}

export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8'

/**
 * Headers a handler may have set for the body it meant to send; an error body
 * replacing it must not inherit them (a stale Content-Length breaks the reply).
 */
export const BODY_HEADERS: readonly string[] = Object.freeze([
  'content-length',
  'content-encoding',
  'content-language',
  'content-range',
  'content-disposition',
  'etag',
  'last-modified',
])

/** The parts of Node's `ServerResponse` that `endStartedResponse` uses. */
export interface StartedResponse {
  uncork(): void
  destroy(): void
  readonly socket: { end(): void } | null
}

/**
 * Ends a response that failed after its headers were sent: too late for an error body,
 * so the connection is closed and the client sees a truncated reply instead of waiting
 * on one that never ends. end(), not destroy(): what was written still reaches the client first.
 */
export function endStartedResponse(res: StartedResponse): void {
  // Newer Node holds a response's writes until the next tick: flush them first.
  res.uncork()
  if (res.socket !== null) res.socket.end()
  else res.destroy()
}

/** The parts of Node's `ServerResponse` that `writeErrorResponse` uses. */
export interface WritableResponse {
  statusCode: number
  removeHeader(name: string): void
  setHeader(name: string, value: string): unknown
  end(body: string): unknown
}

/**
 * Writes an error response on a Node `ServerResponse` that has not started: the headers a handler
 * set for the body it meant to send go first (a stale Content-Length would break the reply).
 */
export function writeErrorResponse(res: WritableResponse, response: ErrorResponse): void {
  for (const name of BODY_HEADERS) res.removeHeader(name)
  res.statusCode = response.status
  for (const name in response.headers) res.setHeader(name, response.headers[name]!)
  res.end(response.body)
}

export function errorBody(code: WireCode, message: string = DEFAULT_MESSAGES[code]): string {
  // What JSON.stringify({ error, message }) writes: codes are plain identifiers, so only the message needs escaping.
  return `{"error":"${code}","message":${JSON.stringify(message)}}`
}

/** The one place an error response is assembled: status from the code table, JSON body, no caching. */
export function errorResponse(code: WireCode, message?: string, extraHeaders?: HeaderMap): ErrorResponse {
  const body = errorBody(code, message)
  const headers: HeaderMap = {
    'content-type': JSON_CONTENT_TYPE,
    'content-length': String(Buffer.byteLength(body)),
    'cache-control': 'no-store',
    ...extraHeaders,
  }
  return { ok: false, status: ERROR_STATUS[code], code, headers, body }
}

/** RFC 6750 §3 challenges. Values are fixed strings or checked tokens, so no escaping is needed. */
export type ChallengeError = 'invalid_request' | 'invalid_token' | 'insufficient_scope'

const CHALLENGE_DESCRIPTIONS: Readonly<Record<ChallengeError, string>> = {
  invalid_request: 'The request carries more than one credential or a malformed Authorization header',
  invalid_token: 'The API key is malformed, unknown, expired or revoked',
  insufficient_scope: 'The API key lacks the permission this resource requires',
}

/** The realm of every challenge unless the `realm` option says otherwise. */
export const DEFAULT_REALM = 'saiku'

// A realm goes inside a quoted-string; keep it to characters that need no escaping.
const REALM_PATTERN = /^[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}$/

/** A `realm` option, checked once when what takes it is built: the default when undefined, a SaikuConfigError naming `path` when unusable. */
export function checkRealm(path: string, realm: unknown): string {
  if (realm === undefined) return DEFAULT_REALM
  if (typeof realm !== 'string' || !REALM_PATTERN.test(realm)) {
    throw new SaikuConfigError(path, '1 to 64 printable ASCII characters without quotes or backslashes', realm)
  }
  return realm
}

export function bearerChallenge(realm: string, error?: ChallengeError, scope?: string): string {
  let challenge = `Bearer realm="${realm}"`
  if (error !== undefined) challenge += `, error="${error}", error_description="${CHALLENGE_DESCRIPTIONS[error]}"`
  if (scope !== undefined) challenge += `, scope="${scope}"`
  return challenge
}

/**
 * `RateLimit-Policy`: every window the limits set, as a Structured Fields list. `monthMs`: the
 * length of the current month window, needed when they set `perMonth` (months run 28 to 31 days).
 */
export function rateLimitPolicy(limits: WindowLimits, monthMs?: number): string {
  let policy = `"minute";q=${limits.perMinute};w=60, "hour";q=${limits.perHour};w=3600`
  if (limits.perDay !== undefined) policy += `, "day";q=${limits.perDay};w=86400`
  if (limits.perMonth !== undefined) policy += `, "month";q=${limits.perMonth};w=${Math.round((monthMs ?? 0) / 1000)}`
  return policy
}

function seconds(ms: number): number {
  return Math.ceil(ms / 1000)
}

/**
 * The window that decides: when refused, the one `Retry-After` points at (a
 * window without room for the request's `cost`); else the one with least left.
 */
export function bindingWindow(decision: LimitDecision, cost = 1): WindowState {
  const { minute, hour, day, month } = decision
  if (!decision.admitted) {
    // The longest window short of room that the wait runs to.
    if (month !== undefined && month.remaining < cost && month.resetMs >= decision.retryAfterMs) return month
    if (day !== undefined && day.remaining < cost && day.resetMs >= decision.retryAfterMs) return day
    return hour.remaining < cost && hour.resetMs >= decision.retryAfterMs ? hour : minute
  }
  // Ties go to the longer window: it takes longer to come back.
  let binding = month ?? day ?? hour
  if (day !== undefined && day.remaining < binding.remaining) binding = day
  if (hour.remaining < binding.remaining) binding = hour
  return minute.remaining < binding.remaining ? minute : binding
}

/** The whole seconds a client must wait: never 0, never earlier than the window's end. */
export function retryAfterSeconds(decision: LimitDecision): number {
  return Math.max(1, seconds(decision.retryAfterMs))
}

/** Adds the rate-limit fields of `mode` to `headers`. `policy` is the precomputed `RateLimit-Policy`; `cost` the request's. */
export function addRateLimitHeaders(
  headers: HeaderMap,
  mode: RateLimitHeaderMode,
  policy: string,
  decision: LimitDecision,
  cost = 1,
): void {
  if (mode === 'draft-11') {
    const { minute, hour, day, month } = decision
    headers['ratelimit-policy'] = policy
    let fields = `"minute";r=${minute.remaining};t=${seconds(minute.resetMs)}, "hour";r=${hour.remaining};t=${seconds(hour.resetMs)}`
    if (day !== undefined) fields += `, "day";r=${day.remaining};t=${seconds(day.resetMs)}`
    if (month !== undefined) fields += `, "month";r=${month.remaining};t=${seconds(month.resetMs)}`
    headers['ratelimit'] = fields
  } else if (mode === 'legacy') {
    headers['x-ratelimit-limit-minute'] = String(decision.minute.limit)
    headers['x-ratelimit-remaining-minute'] = String(decision.minute.remaining)
    headers['x-ratelimit-limit-hour'] = String(decision.hour.limit)
    headers['x-ratelimit-remaining-hour'] = String(decision.hour.remaining)
    if (decision.day !== undefined) {
      headers['x-ratelimit-limit-day'] = String(decision.day.limit)
      headers['x-ratelimit-remaining-day'] = String(decision.day.remaining)
    }
    if (decision.month !== undefined) {
      headers['x-ratelimit-limit-month'] = String(decision.month.limit)
      headers['x-ratelimit-remaining-month'] = String(decision.month.remaining)
    }
    headers['x-ratelimit-reset'] = String(seconds(bindingWindow(decision, cost).resetMs))
  }
}
