import type pg from 'pg'
import type { ApiKeyRecord, ApiKeySummary, KeyStore, TenantRecord, WindowLimits } from '@saiku/core'

// A KeyStore of your own, on PostgreSQL through pg, as the README's "Your own key store" describes it: two tables,
// the key's digest and never the key. The conformance suite (key-store-conformance.ts) proves it.

/** Creates the two tables in the connection's schema, if they are not there yet. */
export async function migrate(pool: pg.Pool): Promise<void> {
  await pool.query(`
    CREATE TABLE IF NOT EXISTS tenants (
      tenant_id text PRIMARY KEY,
      tenant_slug text NOT NULL UNIQUE,
      tier text NOT NULL,
      connection_name text NOT NULL,
      subscription_status text NOT NULL,
      trial_ends_at timestamptz,
      billing_anchor timestamptz,
      per_minute integer,
      per_hour integer,
      per_day integer,
      per_month integer
    );
    CREATE TABLE IF NOT EXISTS api_keys (
      key_id text PRIMARY KEY, -- PostgreSQL's default collation compares text case-sensitively, as key IDs must be
      tenant_id text NOT NULL REFERENCES tenants,
      label text NOT NULL,
      environment text NOT NULL,
      secret_digest text NOT NULL,
      permissions text[] NOT NULL,
      created_at timestamptz NOT NULL,
      expires_at timestamptz,
      revoked_at timestamptz,
      last_used_at timestamptz
    );
    CREATE INDEX IF NOT EXISTS api_keys_by_tenant ON api_keys (tenant_id, created_at);
  `)
}

/** Writes a tenant the way your own system would: the KeyStore interface only reads them. */
export async function insertTenant(pool: pg.Pool, tenant: TenantRecord): Promise<void> {
  await pool.query(
    `INSERT INTO tenants (tenant_id, tenant_slug, tier, connection_name, subscription_status, trial_ends_at, billing_anchor,
       per_minute, per_hour, per_day, per_month)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
    [
      tenant.tenantId,
      tenant.tenantSlug,
      tenant.tier,
      tenant.connectionName,
      tenant.subscription.status,
      tenant.subscription.trialEndsAt ?? null,
      tenant.subscription.billingAnchor ?? null,
      tenant.limits?.perMinute ?? null,
      tenant.limits?.perHour ?? null,
      tenant.limits?.perDay ?? null,
      tenant.limits?.perMonth ?? null,
    ],
  )
}

interface TenantRow {
  tenant_id: string
  tenant_slug: string
  tier: string
  connection_name: string
  subscription_status: TenantRecord['subscription']['status']
  trial_ends_at: Date | null
  billing_anchor: Date | null
  per_minute: number | null
  per_hour: number | null
  per_day: number | null
  per_month: number | null
}

interface KeyRow {
  key_id: string
  tenant_id: string
  label: string
  environment: ApiKeyRecord['environment']
  secret_digest: string
  permissions: string[]
  created_at: Date
  expires_at: Date | null
  revoked_at: Date | null
  last_used_at: Date | null
}

/** A tenant's own limits: the day and month quotas only when it has them. */
function ownLimits(row: TenantRow): WindowLimits {
  return {
    perMinute: row.per_minute!,
    perHour: row.per_hour!,
    ...(row.per_day === null ? {} : { perDay: row.per_day }),
    ...(row.per_month === null ? {} : { perMonth: row.per_month }),
  }
}

export class MyKeyStore implements KeyStore {
  constructor(private readonly pool: pg.Pool) {}

  async findKey(keyId: string): Promise<ApiKeyRecord | null> {
    const { rows } = await this.pool.query<KeyRow>('SELECT * FROM api_keys WHERE key_id = $1', [keyId])
    const row = rows[0]
    if (row === undefined) return null
    return {
      keyId: row.key_id,
      tenantId: row.tenant_id,
      label: row.label,
      environment: row.environment,
      secretDigest: row.secret_digest,
      permissions: row.permissions,
      createdAt: row.created_at,
      expiresAt: row.expires_at,
      revokedAt: row.revoked_at,
      lastUsedAt: row.last_used_at,
    }
  }

  async findTenant(tenantId: string): Promise<TenantRecord | null> {
    const { rows } = await this.pool.query<TenantRow>('SELECT * FROM tenants WHERE tenant_id = $1', [tenantId])
    const row = rows[0]
    if (row === undefined) return null
    return {
      tenantId: row.tenant_id,
      tenantSlug: row.tenant_slug,
      tier: row.tier,
      connectionName: row.connection_name,
      subscription: {
        status: row.subscription_status,
        trialEndsAt: row.trial_ends_at,
        // The day monthly quotas and billing periods start from; without one, calendar months.
        ...(row.billing_anchor === null ? {} : { billingAnchor: row.billing_anchor }),
      },
      limits: row.per_minute === null || row.per_hour === null ? null : ownLimits(row),
    }
  }

  /** Rejects on an existing key ID: the primary key refuses it. */
  async createKey(key: ApiKeyRecord): Promise<void> {
    await this.pool.query(
      `INSERT INTO api_keys (key_id, tenant_id, label, environment, secret_digest, permissions, created_at, expires_at, revoked_at, last_used_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [
        key.keyId,
        key.tenantId,
        key.label,
        key.environment,
        key.secretDigest,
        key.permissions,
        key.createdAt,
        key.expiresAt,
        key.revokedAt,
        key.lastUsedAt,
      ],
    )
  }

  async listKeys(tenantId: string): Promise<ApiKeySummary[]> {
    const { rows } = await this.pool.query<KeyRow>(
      `SELECT * FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY created_at, key_id`,
      [tenantId],
    )
    return rows.map((row) => ({
      keyId: row.key_id,
      label: row.label,
      environment: row.environment,
      permissions: row.permissions,
      createdAt: row.created_at,
      expiresAt: row.expires_at,
      lastUsedAt: row.last_used_at,
    }))
  }

  /** The time it is given, not the database's clock; only a live key is revoked. */
  async revokeKey(keyId: string, revokedAt: Date): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      'UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL',
      [keyId, revokedAt],
    )
    return rowCount === 1
  }

  /** Uses arrive late and out of order from several processes: keep the latest (GREATEST skips a NULL). */
  async recordKeyUse(keyId: string, usedAt: Date): Promise<void> {
    await this.pool.query('UPDATE api_keys SET last_used_at = GREATEST(last_used_at, $2) WHERE key_id = $1', [
      keyId,
      usedAt,
    ])
  }
}
