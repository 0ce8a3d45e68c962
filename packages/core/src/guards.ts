import { ERROR_STATUS, SaikuConfigError, SaikuHttpError, SaikuStoreError, type ErrorCode } from './errors.js'
import { isPermission, permissionsProblem } from './store.js'
import { bearerChallenge, errorResponse, type ErrorResponse } from './http.js'
import type { SaikuPrincipal } from './decision.js'

/** Whether `granted` covers `permission`: an exact match, `*`, or `area:*` for `area:anything`. */
export function grants(granted: readonly string[], permission: string): boolean {
  // Only a permission of the grammar can be granted: "keys:x *" is not below "keys:*".
  if (!isPermission(permission)) return false
  if (granted.includes(permission) || granted.includes('*')) return true
  const colon = permission.indexOf(':')
  return colon !== -1 && granted.includes(`${permission.slice(0, colon)}:*`)
}

/** Whether the credential grants `permission`: an exact match, `*`, or `area:*` for `area:anything`. */
export function hasPermission(principal: SaikuPrincipal, permission: string): boolean {
  return grants(principal.credential.permissions, permission)
}

/**
 * The 403 for a principal lacking any of `permissions`, or null when it holds them all.
 * Without a principal (the auth middleware did not run) the answer is a 401.
 */
export function checkPermissions(principal: SaikuPrincipal | undefined, permissions: readonly string[]): ErrorResponse | null {
  if (principal === undefined) {
    return errorResponse('unauthorized', undefined, { 'www-authenticate': bearerChallenge('saiku') })
  }
  const { realm } = principal
  const missing = permissions.filter((permission) => !hasPermission(principal, permission))
  if (missing.length === 0) return null
  return errorResponse('forbidden', `This API key lacks the permission ${missing.join(', ')}.`, {
    'www-authenticate': bearerChallenge(realm, 'insufficient_scope', permissions.join(' ')),
  })
}

/** Checks a guard's permission list once, when the guard is built. */
export function validatePermissionList(permissions: readonly unknown[]): readonly string[] {
  if (permissions.length === 0) throw new SaikuConfigError('requirePermission()', 'at least one permission', 'none')
  if (permissionsProblem(permissions) !== null) {
    throw new SaikuConfigError('requirePermission()', 'permission names like "keys:write" or "*"', permissions)
  }
  return Object.freeze([...(permissions as string[])])
}

/**
 * Tenant isolation: returns the resource when it belongs to the caller's tenant,
 * and throws the same 404 as for a missing one otherwise, so nobody can probe
 * what other tenants own.
 */
export function ownedByTenant<T extends { readonly tenantId: string }>(
  principal: SaikuPrincipal,
  resource: T | null | undefined,
): T {
  if (resource == null || resource.tenantId !== principal.tenant.tenantId) throw new SaikuHttpError('not_found')
  return resource
}

const CODE_BY_STATUS: Readonly<Record<number, ErrorCode>> = Object.fromEntries(
  Object.entries(ERROR_STATUS).map(([code, status]) => [status, code as ErrorCode]),
)

/**
 * Turns anything a handler threw into the standard JSON error. A SaikuHttpError
 * keeps its code and message; a framework's client error (bad JSON, body too
 * large: `status` 4xx with `expose`) keeps its status; a SaikuStoreError is a
 * 503; everything else is a 500
 * whose message reveals nothing.
 */
export function errorResponseFor(error: unknown): ErrorResponse {
  if (error instanceof SaikuHttpError) {
    // A 401 must carry a challenge (RFC 9110 §15.5.2), even one a handler threw.
    const challenge = error.code === 'unauthorized' ? { 'www-authenticate': bearerChallenge('saiku') } : undefined
    return errorResponse(error.code, error.message, { ...challenge, ...error.headers })
  }
  // A store that failed or stayed locked (a handler's own call, or key management) is unavailable, not broken: 503.
  if (error instanceof SaikuStoreError) return errorResponse('service_unavailable')
  if (typeof error === 'object' && error !== null) {
    const { status, statusCode, expose, type } = error as Record<string, unknown>
    const httpStatus = typeof status === 'number' ? status : statusCode
    if (typeof httpStatus === 'number' && httpStatus >= 400 && httpStatus < 500 && expose !== false) {
      const code = CODE_BY_STATUS[httpStatus] ?? 'invalid_request'
      if (type === 'entity.parse.failed') return errorResponse('invalid_request', 'The request body is not valid JSON.')
      return errorResponse(code)
    }
  }
  return errorResponse('internal_error')
}
