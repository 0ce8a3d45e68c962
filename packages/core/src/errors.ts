/**
 * A wire code: the `error` field of an error body (`'not_found'`). Never an error class's `code`.
 * The spec names five of them: `unauthorized` (401), `payment_required` (402), `forbidden` (403),
 * `not_found` (404) and `rate_limited` (429). The rest are documented extensions that keep the same body shape.
 */
export type WireCode =
  | 'invalid_request'
  | 'unauthorized'
  | 'payment_required'
  | 'forbidden'
  | 'not_found'
  | 'method_not_allowed'
  | 'conflict'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'rate_limited'
  | 'internal_error'
  | 'service_unavailable'

/** Every wire code mapped to its HTTP status, in one place: its type makes it name each {@link WireCode}, and no other. */
export const ERROR_STATUS: { readonly [Code in WireCode]: number } = {
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
}

/** Default messages; a response may carry a more specific one. */
export const DEFAULT_MESSAGES: Readonly<Record<WireCode, string>> = Object.freeze({
  invalid_request: 'The request is malformed.',
  unauthorized: 'API key missing or invalid.',
  payment_required: 'This feature requires an active subscription or trial. Visit /billing to start your 14-day trial.',
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

/**
 * Base of every error this package throws. Each subclass has a literal `code`
 * (`'ERR_SAIKU_…'`): on an {@link AnySaikuError} (see {@link isSaikuError}),
 * `switch (error.code)` narrows to the class.
 */
export abstract class SaikuError extends Error {
  abstract readonly code: SaikuErrorCode
}

/** Misconfiguration, thrown at construction. `path` names the offending option. */
export class SaikuConfigError extends SaikuError {
  override readonly name = 'SaikuConfigError'
  readonly code = 'ERR_SAIKU_CONFIG' as const
  readonly path: string

  /** `secret`: the value holds a secret (a pepper, a signing key): the message tells its shape, never its content. */
  constructor(path: string, expected: string, received: unknown, options: { readonly secret?: boolean } = {}) {
    super(
      `${path}: expected ${expected}, got ${options.secret === true ? describeSecret(received) : describeValue(received)}`,
    )
    this.path = path
  }
}

/**
 * An error a route handler throws on purpose (`throw new SaikuHttpError('not_found')`);
 * the adapters' error handlers write it as the standard JSON body, whose `error` is `wireCode`.
 */
export class SaikuHttpError extends SaikuError {
  override readonly name = 'SaikuHttpError'
  readonly code = 'ERR_SAIKU_HTTP' as const
  /** The `error` field of the body (`'not_found'`). */
  readonly wireCode: WireCode
  readonly status: number
  readonly headers: Readonly<Record<string, string>>

  constructor(wireCode: WireCode, message?: string, headers: Readonly<Record<string, string>> = {}) {
    super(message ?? DEFAULT_MESSAGES[wireCode])
    this.wireCode = wireCode
    this.status = ERROR_STATUS[wireCode]
    this.headers = headers
  }
}

export type StoreSource = 'key_store' | 'limiter'

/** A key store or limiter backend failed or timed out. Never reported as 401 or 429. */
export class SaikuStoreError extends SaikuError {
  override readonly name = 'SaikuStoreError'
  readonly code = 'ERR_SAIKU_STORE' as const
  readonly source: StoreSource
  readonly timedOut: boolean

  constructor(source: StoreSource, message: string, options: { cause?: unknown; timedOut?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.source = source
    this.timedOut = options.timedOut ?? false
  }
}

/**
 * A bad argument to an API call (key management, token issuing, a store write):
 * `field` names it (`'label'`, `'ttlSeconds'`), the message says what is wrong.
 * Through the error handlers: a 400 `invalid_request` with that message.
 */
export class SaikuInputError extends SaikuError {
  override readonly name = 'SaikuInputError'
  readonly code = 'ERR_SAIKU_INVALID_INPUT' as const
  readonly field: string

  constructor(field: string, message: string) {
    super(message)
    this.field = field
  }
}

/** What a call names does not exist (`resource`: `'tenant'`). Through the error handlers: a 404 `not_found`. */
export class SaikuNotFoundError extends SaikuError {
  override readonly name = 'SaikuNotFoundError'
  readonly code = 'ERR_SAIKU_NOT_FOUND' as const
  readonly resource: string

  constructor(resource: string, message: string) {
    super(message)
    this.resource = resource
  }
}

/**
 * The credential a call was given may not do it: it lacks `permissions`, or is
 * of a kind that cannot (then `permissions` is empty). Through the error handlers: a 403 `forbidden`.
 */
export class SaikuPermissionError extends SaikuError {
  override readonly name = 'SaikuPermissionError'
  readonly code = 'ERR_SAIKU_PERMISSION_DENIED' as const
  readonly permissions: readonly string[]

  constructor(message: string, permissions: readonly string[] = []) {
    super(message)
    this.permissions = Object.freeze([...permissions])
  }
}

/**
 * The credential a call was given has expired (or has less than a second left).
 * Through the error handlers: the 401 every failed credential gets, with its challenge.
 */
export class SaikuCredentialExpiredError extends SaikuError {
  override readonly name = 'SaikuCredentialExpiredError'
  readonly code = 'ERR_SAIKU_CREDENTIAL_EXPIRED' as const

  constructor(message = 'The credential has expired.') {
    super(message)
  }
}

/** Every error class of the family: `switch (error.code)` narrows to one. */
export type AnySaikuError =
  | SaikuConfigError
  | SaikuHttpError
  | SaikuStoreError
  | SaikuInputError
  | SaikuNotFoundError
  | SaikuPermissionError
  | SaikuCredentialExpiredError

/** The `code` of every error class (`'ERR_SAIKU_CONFIG'`, …). */
export type SaikuErrorCode = AnySaikuError['code']

/** Whether `value` is one of this package's errors, typed as the union so `switch (value.code)` narrows. */
export function isSaikuError(value: unknown): value is AnySaikuError {
  return value instanceof SaikuError
}

/** `error` as a SaikuStoreError from `source`: kept if it is one, else wrapped with `message`, carrying it as `cause`. */
export function asStoreError(error: unknown, source: StoreSource, message: string): SaikuStoreError {
  return error instanceof SaikuStoreError ? error : new SaikuStoreError(source, message, { cause: error })
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
  if (value === null || value === undefined || typeof value === 'number' || typeof value === 'boolean')
    return describeValue(value)
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
