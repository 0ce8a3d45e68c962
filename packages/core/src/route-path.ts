import type { AuthRequest } from './decision.js'

/** The client address, read only when needed. */
export function requestIp(request: AuthRequest): string | undefined {
  // Read once: an adapter may resolve it on every access.
  const ip = request.ip
  return typeof ip === 'function' ? ip.call(request) : ip
}

const ABSOLUTE_FORM = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i

/**
 * The path as the app routes it where the middleware is mounted: the mounted URL
 * without its query, an absolute-form target (`http://host/path`) reduced to its
 * path, and the mount prefix removed. Case is kept; exemptions compare without it.
 */
export function routePath(request: AuthRequest): string {
  let url = request.mountedUrl ?? request.url
  const authority = ABSOLUTE_FORM.exec(url)
  if (authority !== null) url = url.slice(authority[0].length)
  const end = url.search(/[?#]/)
  let path = end === -1 ? url : url.slice(0, end)
  if (!path.startsWith('/')) path = `/${path}`
  const prefix = request.mountPrefix
  if (prefix !== undefined && prefix !== '' && prefix !== '/') {
    const length = mountPrefixLength(path, prefix)
    if (length !== -1) path = path.slice(length) || '/'
    if (!path.startsWith('/')) path = `/${path}`
  }
  return path
}

/** How much of `path` the prefix covers, whole segments only, case-insensitively; -1 when it does not. */
function mountPrefixLength(path: string, prefix: string): number {
  const wanted = prefix.split('/').filter((segment) => segment !== '')
  const segments = path.split('/')
  // segments[0] is the empty string before the leading slash.
  if (segments.length - 1 < wanted.length) return -1
  let length = 0
  for (let i = 0; i < wanted.length; i++) {
    const segment = segments[i + 1]!
    const want = wanted[i]!
    if (segment === '' || (!want.startsWith(':') && segment.toLowerCase() !== want.toLowerCase())) return -1
    length += 1 + segment.length
  }
  return length
}
