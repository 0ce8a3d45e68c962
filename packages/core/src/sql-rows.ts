import { normalSubscription, type ApiKeyRecord, type SubscriptionStatus, type TenantRecord } from './store.js'

// The column layout both SQL stores use, read back into records. Times may come
// back as Dates (PostgreSQL) or epoch milliseconds (SQLite); permissions as an
// array or as its JSON text.

/** A time column as a driver reads it back: a Date (PostgreSQL), epoch milliseconds (SQLite), or null. */
export type RowTime = Date | number | null

export interface TenantRow {
  tenant_id: string
  tenant_slug: string
  tier: string
  connection_name: string
  subscription_status: string
  trial_ends_at: RowTime
  limit_per_minute: number | null
  limit_per_hour: number | null
  /** The subscription's billing fields (a later migration step); absent on a row read before it. */
  billing_anchor?: RowTime | undefined
  scheduled_tier?: string | null | undefined
  /** A boolean (PostgreSQL) or 0/1 (SQLite). */
  cancel_at_period_end?: boolean | number | null | undefined
  scheduled_change_at?: RowTime | undefined
  /** Null or absent (a schema before the column): no day quota of the tenant's own. */
  limit_per_day?: number | null
  /** Null or absent (a schema before the column): no month quota of the tenant's own. */
  limit_per_month?: number | null
}

export interface KeyRow {
  key_id: string
  tenant_id: string
  label: string
  environment: 'live' | 'test'
  secret_digest: string
  permissions: string[] | string
  created_at: Date | number
  expires_at: RowTime
  revoked_at: RowTime
  last_used_at: RowTime
  /** A list (PostgreSQL `text[]`) or its JSON text (SQLite); null or absent (a schema before it): any address. */
  allowed_addresses?: string[] | string | null
}

const toDate = (value: RowTime): Date | null => (value === null ? null : new Date(value))

export function tenantFromRow(row: TenantRow): TenantRecord {
  return {
    tenantId: row.tenant_id,
    tenantSlug: row.tenant_slug,
    tier: row.tier,
    connectionName: row.connection_name,
    subscription: normalSubscription({
      status: row.subscription_status as SubscriptionStatus,
      trialEndsAt: toDate(row.trial_ends_at),
      billingAnchor: toDate(row.billing_anchor ?? null),
      scheduledTier: row.scheduled_tier ?? null,
      cancelAtPeriodEnd: row.cancel_at_period_end === true || row.cancel_at_period_end === 1,
      scheduledChangeAt: toDate(row.scheduled_change_at ?? null),
    }),
    limits:
      row.limit_per_minute === null || row.limit_per_hour === null
        ? null
        : {
            perMinute: row.limit_per_minute,
            perHour: row.limit_per_hour,
            // Only the quotas the record set, so a record without them reads back without them.
            ...(row.limit_per_day == null ? {} : { perDay: row.limit_per_day }),
            ...(row.limit_per_month == null ? {} : { perMonth: row.limit_per_month }),
          },
  }
}

export function keyFromRow(row: KeyRow): ApiKeyRecord {
  return {
    keyId: row.key_id,
    tenantId: row.tenant_id,
    label: row.label,
    environment: row.environment,
    secretDigest: row.secret_digest,
    permissions: typeof row.permissions === 'string' ? (JSON.parse(row.permissions) as string[]) : row.permissions,
    createdAt: new Date(row.created_at),
    expiresAt: toDate(row.expires_at),
    revokedAt: toDate(row.revoked_at),
    lastUsedAt: toDate(row.last_used_at),
    ...allowedAddressesFromRow(row.allowed_addresses),
  }
}

function allowedAddressesFromRow(value: string[] | string | null | undefined): { allowedAddresses?: string[] } {
  if (value === null || value === undefined) return {}
  const list = typeof value === 'string' ? (JSON.parse(value) as string[]) : value
  return list.length === 0 ? {} : { allowedAddresses: list }
}
