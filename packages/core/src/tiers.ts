import { SaikuConfigError } from './errors.js'
import { isPlainObject, isPositiveInteger } from './validate.js'

export interface WindowLimits {
  readonly perMinute: number
  readonly perHour: number
  /** Optional quota per UTC day (calendar day, also when minute and hour are rolling). */
  readonly perDay?: number | undefined
  /**
   * Optional quota per month: the tenant's billing month when its subscription has a
   * `billingAnchor` (see {@link monthWindowAt}), else the calendar month in UTC.
   */
  readonly perMonth?: number | undefined
  /**
   * The UTC day of the month (1–31) on which the month window starts; on a shorter month, its
   * last day. Set by the authenticator from the subscription's `billingAnchor` for the limiter
   * backend; never part of a tier table (dropped there). Absent: the 1st.
   */
  readonly monthStartDay?: number | undefined
}

/** A tier either has fixed limits or takes them from each tenant's own record. */
export type TierLimits = WindowLimits | 'custom'

export type TierTable = Readonly<Record<string, TierLimits>>

/** The spec's plans: minute and hour only (day and month quotas are opt-in). Enterprise limits come from the tenant record. */
export const DEFAULT_TIERS: TierTable = Object.freeze({
  starter: Object.freeze({ perMinute: 60, perHour: 1_000 }),
  team: Object.freeze({ perMinute: 300, perHour: 10_000 }),
  business: Object.freeze({ perMinute: 1_000, perHour: 50_000 }),
  enterprise: 'custom',
})

/**
 * Checks one set of limits (`perMinute`, `perHour`, optional `perDay` and `perMonth`, each
 * at least the one before it); throws a {@link SaikuConfigError} naming `path`.
 */
export function validateWindowLimits(path: string, value: unknown): WindowLimits {
  if (!isPlainObject(value))
    throw new SaikuConfigError(path, 'an object { perMinute, perHour, perDay?, perMonth? }', value)
  const { perMinute, perHour, perDay, perMonth } = value
  if (!isPositiveInteger(perMinute)) throw new SaikuConfigError(`${path}.perMinute`, 'a positive integer', perMinute)
  if (!isPositiveInteger(perHour)) throw new SaikuConfigError(`${path}.perHour`, 'a positive integer', perHour)
  if (perHour < perMinute) {
    throw new SaikuConfigError(`${path}.perHour`, `at least perMinute (${perMinute})`, perHour)
  }
  if (perDay !== undefined && perDay !== null) {
    if (!isPositiveInteger(perDay)) throw new SaikuConfigError(`${path}.perDay`, 'a positive integer or absent', perDay)
    if (perDay < perHour) throw new SaikuConfigError(`${path}.perDay`, `at least perHour (${perHour})`, perDay)
  }
  if (perMonth !== undefined && perMonth !== null) {
    if (!isPositiveInteger(perMonth))
      throw new SaikuConfigError(`${path}.perMonth`, 'a positive integer or absent', perMonth)
    const floor = isPositiveInteger(perDay) ? perDay : perHour
    const floorName = isPositiveInteger(perDay) ? 'perDay' : 'perHour'
    if (perMonth < floor) throw new SaikuConfigError(`${path}.perMonth`, `at least ${floorName} (${floor})`, perMonth)
  }
  const limits: { -readonly [K in keyof WindowLimits]: WindowLimits[K] } = { perMinute, perHour }
  if (isPositiveInteger(perDay)) limits.perDay = perDay
  if (isPositiveInteger(perMonth)) limits.perMonth = perMonth
  return Object.freeze(limits)
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
