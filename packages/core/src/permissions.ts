import { SaikuConfigError, SaikuHttpError } from './errors.js'
import { isPermission, permissionsProblem } from './store.js'
import { bearerChallenge, checkRealm, DEFAULT_REALM, errorResponse, type ErrorResponse } from './http.js'
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
 * Without a principal (the auth middleware did not run, or report-only authentication
 * admitted the request without one) the answer is a 401 challenging `realm`; a
 * principal's own realm wins over it.
 */
export function checkPermissions(
  principal: SaikuPrincipal | undefined,
  permissions: readonly string[],
  realm: string = DEFAULT_REALM,
): ErrorResponse | null {
  if (principal === undefined) {
    return errorResponse('unauthorized', undefined, { 'www-authenticate': bearerChallenge(realm) })
  }
  const missing = permissions.filter((permission) => !hasPermission(principal, permission))
  if (missing.length === 0) return null
  return errorResponse('forbidden', `This API key lacks the permission ${missing.join(', ')}.`, {
    'www-authenticate': bearerChallenge(principal.realm, 'insufficient_scope', permissions.join(' ')),
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

/** The last argument of `requirePermission(...permissions, options?)`. */
export interface PermissionGuardOptions {
  /** The realm of a 401 for a request without a principal; the principal's own realm wins. Default `"saiku"`. */
  readonly realm?: string | undefined
}

/** Arguments of `requirePermission`: permissions, optionally followed by options. */
export type PermissionGuardArguments = [...permissions: string[], options: PermissionGuardOptions] | string[]

export interface PermissionGuard {
  readonly permissions: readonly string[]
  readonly realm: string
}

/** Checks the arguments of an adapter's `requirePermission(...)` once, when the guard is built. */
export function permissionGuard(args: readonly unknown[]): PermissionGuard {
  const last = args.at(-1)
  const hasOptions = typeof last === 'object' && last !== null && !Array.isArray(last)
  const options = (hasOptions ? last : {}) as PermissionGuardOptions
  const permissions = validatePermissionList(hasOptions ? args.slice(0, -1) : args)
  return Object.freeze({ permissions, realm: checkRealm('requirePermission().realm', options.realm) })
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
