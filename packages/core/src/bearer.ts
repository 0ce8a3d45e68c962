/** What the Authorization header holds, as far as RFC 6750 §2.1 is concerned. */
export type BearerCredentials =
  | { readonly kind: 'token'; readonly token: string }
  /** No credentials, or another scheme: answered with a bare challenge. */
  | { readonly kind: 'missing' }
  /** A Bearer header whose token is empty or not a b64token. */
  | { readonly kind: 'malformed' }
  /** More than one credential: two headers, two tokens, or the header and the query string. */
  | { readonly kind: 'ambiguous' }

/** A header without a usable token. */
export type BearerProblem = Exclude<BearerCredentials, { readonly kind: 'token' }>

export interface CredentialSource {
  readonly headers: Readonly<Record<string, string | readonly string[] | undefined>>
  readonly rawHeaders?: readonly string[] | undefined
  readonly url?: string | undefined
}

/**
 * Longest token read at all; anything longer is refused before any work. Room
 * for signed tokens (a 4096-bit RS256 JWT is about 1.1 KB); an API key is
 * refused by its exact length long before.
 */
export const MAX_TOKEN_LENGTH = 8192

const MISSING: BearerProblem = Object.freeze({ kind: 'missing' })
const MALFORMED: BearerProblem = Object.freeze({ kind: 'malformed' })
const AMBIGUOUS: BearerProblem = Object.freeze({ kind: 'ambiguous' })

// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=". Compiled to native code and run over
// the string at once, it takes about half the time of a loop of charCodeAt over a sliced string.
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/
const QUERY_TOKEN = /(?:^|&)access_token=/i
const NOTHING = /(?:)/

/**
 * `pattern.test(text)`, without keeping `text`: a successful match leaves its subject in
 * `RegExp.input` (a legacy static any code can read, and a heap snapshot shows) until the
 * next one, so a match of nothing follows it.
 */
function matchesAndForgets(pattern: RegExp, text: string): boolean {
  if (!pattern.test(text)) return false
  NOTHING.test('')
  return true
}

/** Node keeps only the first of repeated Authorization headers; the raw list shows them all. */
function authorizationHeaderCount(rawHeaders: readonly string[]): number {
  let count = 0
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!
    // Length and first letter rule out almost every other header before any string work; the usual
    // spellings are compared as they are, anything else in lower case.
    if (name.length !== 13 || (name.charCodeAt(0) | 0x20) !== 97 /* a */) continue
    if (name === 'Authorization' || name === 'authorization' || name.toLowerCase() === 'authorization') count++
  }
  return count
}

/** Whether the header starts with the scheme "bearer", in any case, without building strings. */
function startsWithBearer(header: string): boolean {
  return (
    header.length >= 6 &&
    (header.charCodeAt(0) | 0x20) === 98 &&
    (header.charCodeAt(1) | 0x20) === 101 &&
    (header.charCodeAt(2) | 0x20) === 97 &&
    (header.charCodeAt(3) | 0x20) === 114 &&
    (header.charCodeAt(4) | 0x20) === 101 &&
    (header.charCodeAt(5) | 0x20) === 114
  )
}

function hasQueryToken(url: string | undefined): boolean {
  if (url === undefined) return false
  const query = url.indexOf('?')
  return query !== -1 && matchesAndForgets(QUERY_TOKEN, url.slice(query + 1))
}

/**
 * Reads the bearer token from the Authorization header only: the scheme is
 * case-insensitive, the token is never taken from the query string or a body.
 */
export function extractBearer(source: CredentialSource): BearerCredentials {
  const header = source.headers.authorization
  if (header === undefined) return MISSING
  if (typeof header !== 'string') return AMBIGUOUS
  if (source.rawHeaders !== undefined && authorizationHeaderCount(source.rawHeaders) > 1) return AMBIGUOUS
  if (!startsWithBearer(header)) return MISSING
  if (header.length === 6) return MALFORMED
  const separator = header.charCodeAt(6)
  if (separator !== 32 /* SP */) return separator === 9 /* HTAB */ ? MALFORMED : MISSING
  let start = 7
  while (start < header.length && header.charCodeAt(start) === 32) start++
  const token = header.slice(start)
  if (token.length === 0) return MALFORMED
  if (token.length > MAX_TOKEN_LENGTH || !matchesAndForgets(B64TOKEN, token))
    return token.includes(' ') || token.includes(',') ? AMBIGUOUS : MALFORMED
  if (hasQueryToken(source.url)) return AMBIGUOUS
  return { kind: 'token', token }
}
