import type { AuthRequest, PassedDecision } from './decision.js'

export type PreflightMode = 'authenticate' | 'pass'
export const PREFLIGHT_MODES: readonly PreflightMode[] = Object.freeze(['authenticate', 'pass'])

/** The one decision a passed preflight gets: shared and frozen, since nothing in it is the request's own. */
export const PASSED_PREFLIGHT: PassedDecision = Object.freeze({
  ok: true,
  passed: 'preflight',
  principal: null,
  headers: Object.freeze({}),
})

function present(value: string | readonly string[] | undefined): boolean {
  return typeof value === 'string' ? value !== '' : value !== undefined && value.length > 0
}

/**
 * A CORS preflight as a browser sends it (Fetch standard, "CORS-preflight request"): `OPTIONS`
 * with `Origin` and `Access-Control-Request-Method`, and never credentials. A request that
 * carries an Authorization header is no browser's preflight, so it is authenticated as any other.
 */
export function isPreflight(request: AuthRequest): boolean {
  if (request.method !== 'OPTIONS') return false
  const { headers } = request
  return (
    present(headers.origin) && present(headers['access-control-request-method']) && headers.authorization === undefined
  )
}
