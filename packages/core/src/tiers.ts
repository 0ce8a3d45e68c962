import { SaikuConfigError } from './errors.js'
import { isPlainObject, isPositiveInteger } from './validate.js'

export interface WindowLimits {
  readonly perMinute: number
  readonly perHour: number
}

/** A tier either has fixed limits or takes them from each tenant's own record. */
export type TierLimits = WindowLimits | 'custom'

export type TierTable = Readonly<Record<string, TierLimits>>

/** The spec's plans. Enterprise limits come from the tenant record. */
export const DEFAULT_TIERS: TierTable = Object.freeze({
  starter: Object.freeze({ perMinute: 60, perHour: 1_000 }),
  team: Object.freeze({ perMinute: 300, perHour: 10_000 }),
  business: Object.freeze({ perMinute: 1_000, perHour: 50_000 }),
  enterprise: 'custom',
})

/** Checks one pair of limits; throws a {@link SaikuConfigError} naming `path`. */
export function validateWindowLimits(path: string, value: unknown): WindowLimits {
  if (!isPlainObject(value)) throw new SaikuConfigError(path, 'an object { perMinute, perHour }', value)
  const { perMinute, perHour } = value
  if (!isPositiveInteger(perMinute)) throw new SaikuConfigError(`${path}.perMinute`, 'a positive integer', perMinute)
  if (!isPositiveInteger(perHour)) throw new SaikuConfigError(`${path}.perHour`, 'a positive integer', perHour)
  if (perHour < perMinute) {
    throw new SaikuConfigError(`${path}.perHour`, `at least perMinute (${perMinute})`, perHour)
  }
  return Object.freeze({ perMinute, perHour })
}

/** The default table with the user's overrides merged over it, every entry validated. */
export function resolveTierTable(overrides: unknown, path = 'tiers'): TierTable {
  if (overrides === undefined) return DEFAULT_TIERS
  if (!isPlainObject(overrides)) {
    throw new SaikuConfigError(path, 'an object mapping tier names to { perMinute, perHour } or "custom"', overrides)
  }
  const table: Record<string, TierLimits> = { ...DEFAULT_TIERS }
  for (const [tier, limits] of Object.entries(overrides)) {
    if (tier.length === 0) throw new SaikuConfigError(path, 'non-empty tier names', tier)
    table[tier] = limits === 'custom' ? 'custom' : validateWindowLimits(`${path}.${tier}`, limits)
  }
  return Object.freeze(table)
}

export interface TenantLimitSource {
  readonly tenantSlug: string
  readonly tier: string
  readonly limits?: WindowLimits | null | undefined
}

/**
 * The limits that apply to a tenant: its own `limits` when set (required on a
 * "custom" tier such as enterprise), else its tier's. A tenant the table cannot
 * serve is a configuration error, never a silent default.
 */
export function limitsForTenant(table: TierTable, tenant: TenantLimitSource): WindowLimits {
  const path = `tenants[${JSON.stringify(tenant.tenantSlug)}]`
  if (tenant.limits != null) return validateWindowLimits(`${path}.limits`, tenant.limits)
  const tierLimits = Object.hasOwn(table, tenant.tier) ? table[tenant.tier] : undefined
  if (tierLimits === undefined) {
    throw new SaikuConfigError(`${path}.tier`, `one of ${Object.keys(table).join(', ')}`, tenant.tier)
  }
  if (tierLimits === 'custom') {
    throw new SaikuConfigError(
      `${path}.limits`,
      `{ perMinute, perHour } for the custom tier "${tenant.tier}"`,
      tenant.limits,
    )
  }
  return tierLimits
}
