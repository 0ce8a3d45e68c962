/**
 * The wire codes of every error body, mapped to their HTTP status in one place.
 * The first five are the spec's; the rest are documented extensions that keep the same body shape.
 */
export const ERROR_STATUS = {
  invalid_request: 400,
  unauthorized: 401,
  payment_required: 402,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  internal_error: 500,
  service_unavailable: 503,
} as const

export type ErrorCode = keyof typeof ERROR_STATUS

/** Default messages; a response may carry a more specific one. */
export const DEFAULT_MESSAGES: Readonly<Record<ErrorCode, string>> = Object.freeze({
  invalid_request: 'The request is malformed.',
  unauthorized: 'API key missing or invalid.',
  payment_required:
    'This feature requires an active subscription or trial. Visit /billing to start your 14-day trial.',
  forbidden: 'API key valid but lacks permission for this resource.',
  not_found: 'Resource does not exist.',
  method_not_allowed: 'This method is not allowed on this resource.',
  conflict: 'The request conflicts with the current state of the resource.',
  payload_too_large: 'The request body is too large.',
  unsupported_media_type: 'The request body has an unsupported content type.',
  rate_limited: 'Rate limit exceeded.',
  internal_error: 'An unexpected error occurred.',
  service_unavailable: 'The service is temporarily unavailable. Retry shortly.',
})

/** Base of every error this package throws. `switch (error.kind)` narrows. */
export abstract class SaikuError extends Error {
  abstract readonly kind: 'config' | 'http' | 'store'
}

/** Misconfiguration, thrown at construction. `path` names the offending option. */
export class SaikuConfigError extends SaikuError {
  readonly kind = 'config' as const
  override readonly name = 'SaikuConfigError'
  readonly code = 'ERR_SAIKU_CONFIG' as const
  readonly path: string

  /** `secret`: the value holds a secret (a pepper, a signing key): the message tells its shape, never its content. */
  constructor(path: string, expected: string, received: unknown, options: { readonly secret?: boolean } = {}) {
    super(`${path}: expected ${expected}, got ${options.secret === true ? describeSecret(received) : describeValue(received)}`)
    this.path = path
  }
}

/**
 * An error a route handler throws on purpose (`throw new SaikuHttpError('not_found')`);
 * the adapters' error handlers write it as the standard JSON body.
 */
export class SaikuHttpError extends SaikuError {
  readonly kind = 'http' as const
  override readonly name = 'SaikuHttpError'
  readonly code: ErrorCode
  readonly status: number
  readonly headers: Readonly<Record<string, string>>

  constructor(code: ErrorCode, message?: string, headers: Readonly<Record<string, string>> = {}) {
    super(message ?? DEFAULT_MESSAGES[code])
    this.code = code
    this.status = ERROR_STATUS[code]
    this.headers = headers
  }
}

export type StoreSource = 'key_store' | 'limiter'

/** A key store or limiter backend failed or timed out. Never reported as 401 or 429. */
export class SaikuStoreError extends SaikuError {
  readonly kind = 'store' as const
  override readonly name = 'SaikuStoreError'
  readonly source: StoreSource
  readonly timedOut: boolean

  constructor(source: StoreSource, message: string, options: { cause?: unknown; timedOut?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.source = source
    this.timedOut = options.timedOut ?? false
  }
}

export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value)
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value)
  if (value === null) return 'null'
  if (value === undefined) return 'undefined'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'function') return 'a function'
  return 'an object'
}

/** What a secret-bearing value is, without any of it: start-up logs keep error messages. */
export function describeSecret(value: unknown): string {
  if (typeof value === 'string') return `a string of ${value.length} characters (not shown)`
  if (value instanceof Uint8Array) return `${value.length} bytes (not shown)`
  if (value === null || value === undefined || typeof value === 'number' || typeof value === 'boolean') return describeValue(value)
  return `${describeValue(value)} (not shown)`
}

/** A URL as it may be printed: any user name and password replaced. */
export function redactUrl(url: URL): string {
  if (url.username === '' && url.password === '') return url.href
  const shown = new URL(url.href)
  shown.username = 'redacted'
  shown.password = ''
  return shown.href
}
