// A key or token has no business in a path, but clients put them there (`;access_token=…`,
// a raw `#fragment`, a key pasted as a segment). Whatever looks like one is replaced.
const SECRET_SHAPES = [
  // API keys, also with their underscores percent-encoded.
  /sk(?:_|%5f)(?:live|test)(?:_|%5f)(?:[A-Za-z0-9_]|%5f)*/gi,
  // JWTs and other dotted base64url tokens that start with a JSON header.
  /eyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*){1,2}/g,
  // Any parameter that names a token or key, in matrix (;name=value) or query form.
  /((?:access|refresh|id)?_?(?:token|key|secret|password|api_?key)=)[^;&/?#]*/gi,
]
const REDACTED = '[redacted]'

/**
 * The path of a request URL as hooks and logs may see it: without the query
 * string or fragment, and with anything shaped like an API key, a JWT, or a
 * `token=`/`key=` parameter replaced by `[redacted]`.
 */
export function reportedPath(url: string): string {
  let end = url.length
  const query = url.indexOf('?')
  if (query !== -1) end = query
  const fragment = url.indexOf('#')
  if (fragment !== -1 && fragment < end) end = fragment
  let path = end === url.length ? url : url.slice(0, end)
  // Most paths hold none of these characters: nothing to scan.
  if (!/[_%.=]/.test(path)) return path
  for (const shape of SECRET_SHAPES)
    path = path.replace(shape, (match, name?: string) => (typeof name === 'string' ? `${name}${REDACTED}` : REDACTED))
  return path
}
