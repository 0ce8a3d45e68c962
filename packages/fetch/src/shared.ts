import {
  addressFromHeader,
  resolveClientAddressHeader,
  type AuthRequest,
  type ErrorResponse,
  type HeaderMap,
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

// What the root entry and the Hono entry share: the request mapped in, the decision mapped out.

/** The options of `@saiku/core`, and where the client address comes from behind proxies of yours. */
export interface SaikuFetchOptions extends SaikuOptions {
  /**
   * A header your proxy sets to the client's address (`"x-forwarded-for"`), read instead of the address the
   * host gives. Never set by default: anyone can send any header to an app that no proxy of yours fronts.
   */
  readonly clientAddressHeader?: string | undefined
  /**
   * How many proxies of yours append to `clientAddressHeader`: the address is the entry that many from the
   * right (entries further left were written by the client). Default 1.
   */
  readonly proxyHops?: number | undefined
}

/** What the host knows of the connection. */
export interface SaikuRequestInfo {
  /** The peer's address: Bun's `server.requestIP(request)?.address`, Deno's `info.remoteAddr.hostname`. */
  readonly clientAddress?: string | undefined
}

/** Admitted: call the handler, then put `headers` (the rate-limit fields) on its response. */
export interface SaikuAdmitted {
  readonly ok: true
  readonly principal: SaikuPrincipal
  readonly headers: Readonly<HeaderMap>
  readonly unverified: null
}

/** Report-only authentication let a request through whose credentials failed: no principal, the refusal it would have had. */
export interface SaikuUnverified {
  readonly ok: true
  readonly principal: null
  readonly headers: Readonly<HeaderMap>
  readonly unverified: WouldBeRefusal
}

/** A browser's CORS preflight that `preflight: 'pass'` let through unauthenticated and uncounted: answer it (or let your CORS layer). */
export interface SaikuPassed {
  readonly ok: true
  readonly passed: 'preflight'
  readonly principal: null
  readonly headers: Readonly<HeaderMap>
  readonly unverified: null
}

/** Refused: return `response` as it is (401, 402, 429, 503…, with its JSON body and headers). */
export interface SaikuRefused {
  readonly ok: false
  readonly response: Response
}

export type SaikuFetchResult = SaikuAdmitted | SaikuPassed | SaikuUnverified | SaikuRefused

export interface SaikuFetchAuth {
  (request: Request, info?: SaikuRequestInfo): Promise<SaikuFetchResult>
  /** The core authenticator: key management (`keys`), cache invalidation. */
  readonly authenticator: Authenticator
}

/** The refusal as the runtime's own `Response`: whatever class the host brings, it is the global one. */
export function toResponse(refusal: ErrorResponse): Response {
  return new Response(refusal.body, { status: refusal.status, headers: refusal.headers })
}

/**
 * Sets `headers` on a handler's response. A response whose headers are immutable (`Response.redirect`,
 * one returned by `fetch`) is copied into a new one that carries them: same status, headers and body stream.
 */
export function withHeaders(response: Response, headers: Readonly<HeaderMap>): Response {
  let target = response
  for (const name in headers) {
    try {
      target.headers.set(name, headers[name]!)
    } catch (error) {
      if (target !== response) throw error
      target = new Response(response.body, response)
      target.headers.set(name, headers[name]!)
    }
  }
  return target
}

/** True for anything shaped like a `Response`, whichever class made it. */
export function isResponse(value: unknown): value is Response {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Response).status === 'number' &&
    typeof (value as Response).headers?.set === 'function'
  )
}

// The requests each authenticator admitted: a second pass over the same Request (a handler wrapped twice,
// a proxy middleware and a route) is recognised by the core and not counted again. The principal rides on the
// Request under a symbol of this module: a WeakMap entry per request cost more than the rest of the adapter
// (its insertion and the collector's work on it). A Request that takes no property is kept in the WeakMap.
const ADMITTED = Symbol('saiku.admittedPrincipal')
type MarkedRequest = Request & { [ADMITTED]?: SaikuPrincipal }
const admittedUnextensible = new WeakMap<Request, SaikuPrincipal>()

function admittedPrincipal(request: Request): SaikuPrincipal | undefined {
  return (request as MarkedRequest)[ADMITTED] ?? admittedUnextensible.get(request)
}

function markAdmitted(request: Request, principal: SaikuPrincipal): void {
  if (Object.isExtensible(request)) (request as MarkedRequest)[ADMITTED] = principal
  else admittedUnextensible.set(request, principal)
}

const unverifiedRequests = new WeakMap<Request, WouldBeRefusal>()

/** The refusal report-only authentication did not send for this request, or null. */
export function unverifiedOf(request: Request): WouldBeRefusal | null {
  return unverifiedRequests.get(request) ?? null
}

// RFC 9110 token characters, in lower case: the names Node's req.headers has.
const LOWER_CASE_HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/

/**
 * `Headers` as the record the core and its hooks read (`headers.authorization`). Each name is read from `Headers`
 * when asked: the core asks for one, and copying them all would cost every request more than its decision.
 * Listing the names (`Object.keys`, spreading) copies them once.
 */
function headerRecord(headers: Headers): Record<string, string> {
  return new Proxy<Record<string, string>>({}, new HeaderRecordTraps(headers))
}

// As in Node's req.headers: names in lower case are the headers, anything else (an invalid name, `hasOwnProperty`,
// `toString`) is what a plain object has, never a TypeError from Headers nor a header that shadows a method.
const isName = (name: string | symbol): name is string => typeof name === 'string' && LOWER_CASE_HEADER_NAME.test(name)

// The traps as methods (a proxy calls them with its handler as `this`): one object per request, not a closure per trap.
class HeaderRecordTraps implements ProxyHandler<Record<string, string>> {
  readonly #headers: Headers
  #copy: Record<string, string> | undefined

  constructor(headers: Headers) {
    this.#headers = headers
  }

  #all(): Record<string, string> {
    return (this.#copy ??= Object.fromEntries(this.#headers))
  }

  get(target: Record<string, string>, name: string | symbol, receiver: unknown): unknown {
    return (isName(name) ? this.#headers.get(name) : null) ?? (Reflect.get(target, name, receiver) as unknown)
  }

  has(target: Record<string, string>, name: string | symbol): boolean {
    return (isName(name) && this.#headers.has(name)) || Reflect.has(target, name)
  }

  ownKeys(): ArrayLike<string | symbol> {
    return Reflect.ownKeys(this.#all())
  }

  getOwnPropertyDescriptor(_target: Record<string, string>, name: string | symbol): PropertyDescriptor | undefined {
    return Reflect.getOwnPropertyDescriptor(this.#all(), name)
  }

  set(): boolean {
    return false
  }

  deleteProperty(): boolean {
    return false
  }

  defineProperty(): boolean {
    return false
  }
}

/** A Fetch request as the core reads it; each header is read only when asked for. */
class FetchAuthRequest implements AuthRequest {
  readonly url: string
  readonly principal: SaikuPrincipal | undefined
  readonly #request: Request
  readonly #ip: () => string | undefined
  readonly #mountPrefix: (() => string | undefined) | undefined
  #prefix: string | undefined | null = null
  #headers: Record<string, string> | undefined

  constructor(request: Request, ip: () => string | undefined, mountPrefix: (() => string | undefined) | undefined) {
    const { url } = request
    // Path and query: the origin is the host's to know, not the client's target.
    const scheme = url.indexOf('://')
    const path = scheme === -1 ? -1 : url.indexOf('/', scheme + 3)
    this.url = scheme === -1 ? url : path === -1 ? '/' : url.slice(path)
    this.principal = admittedPrincipal(request)
    this.#request = request
    this.#ip = ip
    this.#mountPrefix = mountPrefix
  }

  /** Found when the core asks (exemptions, cost): most requests never need it. */
  get mountPrefix(): string | undefined {
    if (this.#prefix === null) this.#prefix = this.#mountPrefix?.()
    return this.#prefix
  }

  /** Repeated lines of one header arrive joined with ", ", so two Authorization headers are one value the core refuses. */
  get headers(): Record<string, string> {
    return (this.#headers ??= headerRecord(this.#request.headers))
  }

  get method(): string {
    return this.#request.method
  }

  /** Read only under report-only authentication: a request let through is not counted again. */
  get unverified(): WouldBeRefusal | undefined {
    return unverifiedRequests.get(this.#request)
  }

  ip(): string | undefined {
    return this.#ip()
  }
}

/** What the Fetch adapters share: the request mapped in, the decision mapped out. */
export interface FetchAuthenticator {
  readonly authenticator: Authenticator
  authenticate(
    request: Request,
    hostAddress: () => string | undefined,
    /** Where the middleware is mounted ("/api"), asked only when the core needs it. */
    mountPrefix?: () => string | undefined,
  ): SaikuFetchResult | Promise<SaikuFetchResult>
}

const PASSED: SaikuPassed = Object.freeze({
  ok: true,
  passed: 'preflight',
  principal: null,
  headers: Object.freeze({}),
  unverified: null,
})

/** Checks the options now (a misconfiguration throws a `SaikuConfigError`) and builds the authenticator. */
export function createFetchAuthenticator(store: KeyStore, options: SaikuFetchOptions = {}): FetchAuthenticator {
  if (typeof options !== 'object' || options === null) throw new SaikuConfigError('options', 'an object', options)
  const { clientAddressHeader, proxyHops, ...coreOptions } = options
  const header = resolveClientAddressHeader(clientAddressHeader, proxyHops)
  const authenticator = createAuthenticator(store, coreOptions)
  const budgeted = authenticator.options.failedAuth !== null
  let warned = false
  const unknownAddress = (): undefined => {
    if (budgeted && !warned) {
      warned = true
      process.emitWarning(
        'Saiku auth: a request came with no client address, so every such request shares one failed-authentication ' +
          'budget. Pass the address the host gives (getConnInfo, Bun server.requestIP, Deno info.remoteAddr), or ' +
          'clientAddressHeader behind a proxy of yours.',
        { code: 'SAIKU_NO_CLIENT_ADDRESS' },
      )
    }
    return undefined
  }
  const decide = (request: Request, decision: Awaited<ReturnType<Authenticator['check']>>): SaikuFetchResult => {
    if (decision.ok && decision.principal === null) return PASSED
    if (decision.ok) {
      markAdmitted(request, decision.principal)
      return { ok: true, principal: decision.principal, headers: decision.headers, unverified: null }
    }
    if ('unverified' in decision) {
      unverifiedRequests.set(request, decision.unverified)
      return { ok: true, principal: null, headers: {}, unverified: decision.unverified }
    }
    return { ok: false, response: toResponse(decision) }
  }
  return {
    authenticator,
    authenticate(request, hostAddress, mountPrefix) {
      const ip =
        header === null
          ? () => hostAddress() || unknownAddress()
          : () => addressFromHeader(request.headers.get(header.name), header.hops) ?? unknownAddress()
      const outcome = authenticator.check(new FetchAuthRequest(request, ip, mountPrefix))
      return outcome instanceof Promise
        ? outcome.then((decision) => decide(request, decision))
        : decide(request, outcome)
    },
  }
}
