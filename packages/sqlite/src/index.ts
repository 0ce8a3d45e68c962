import Database from 'better-sqlite3'
import {
  announceKeyStoreChange,
  keyFromRow,
  tenantFromRow,
  type KeyRow,
  type TenantRow,
  DEFAULT_TIERS,
  SaikuConfigError,
  toKeySummary,
  validateTenantRecord,
  type ApiKeyRecord,
  type ApiKeySummary,
  type KeyChange,
  type TenantAdminStore,
  type TenantRecord,
  type TierTable,
} from '@saiku/core'

/** The schema, one step per version; applied in order inside a transaction, never edited once released. */
export const MIGRATIONS: readonly string[] = Object.freeze([
  `CREATE TABLE saiku_tenants (
     tenant_id TEXT PRIMARY KEY,
     tenant_slug TEXT NOT NULL UNIQUE,
     tier TEXT NOT NULL,
     connection_name TEXT NOT NULL,
     subscription_status TEXT NOT NULL,
     trial_ends_at INTEGER,
     limit_per_minute INTEGER,
     limit_per_hour INTEGER
   );
   CREATE TABLE saiku_api_keys (
     key_id TEXT PRIMARY KEY,
     tenant_id TEXT NOT NULL REFERENCES saiku_tenants (tenant_id),
     label TEXT NOT NULL,
     environment TEXT NOT NULL CHECK (environment IN ('live', 'test')),
     secret_digest TEXT NOT NULL UNIQUE,
     permissions TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     expires_at INTEGER,
     revoked_at INTEGER,
     last_used_at INTEGER
   );
   CREATE INDEX saiku_api_keys_by_tenant ON saiku_api_keys (tenant_id, created_at);
   CREATE TABLE saiku_changes (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     kind TEXT NOT NULL CHECK (kind IN ('key', 'tenant')),
     ref TEXT NOT NULL,
     changed_at INTEGER NOT NULL
   );`,
])

export interface SqliteKeyStoreOptions {
  /** Tier table that tenants are validated against when written. Default: the spec's. */
  readonly tiers?: TierTable
  /**
   * How often to look for revocations and tenant changes made by other processes
   * (a CLI, another server) and drop them from this process's caches. 0 turns it off.
   * Default 1000: with it, a revocation elsewhere applies here within about a second.
   */
  readonly watchIntervalMs?: number
  /** How long a write waits for another process's lock. Default 5000. */
  readonly busyTimeoutMs?: number
  /** `lastUsedAt` writes are gathered and written together this often, never one per request. Default 10000. */
  readonly lastUsedFlushMs?: number
  /** Receives failures of the background work (change polling, last-use writes), which never throw. */
  readonly onError?: (error: Error) => void
}

const msOrNull = (date: Date | null | undefined): number | null => (date == null ? null : date.getTime())

// Change rows older than this are pruned; a process that slept longer re-reads everything from its caches' TTL anyway.
const CHANGE_RETENTION_MS = 3_600_000

/**
 * A KeyStore on one SQLite file (better-sqlite3). WAL mode lets a server and an
 * operator CLI use the file at once; the schema migrates itself on open.
 */
export class SqliteKeyStore implements TenantAdminStore {
  readonly db: Database.Database
  readonly #tiers: TierTable
  readonly #statements
  #lastChangeId: number
  #dataVersion: number
  #watcher: NodeJS.Timeout | undefined
  #polls = 0
  #pendingUses = new Map<string, number>()
  #flushTimer: NodeJS.Timeout | undefined
  readonly #lastUsedFlushMs: number
  readonly #onError: (error: Error) => void

  constructor(filename: string, options: SqliteKeyStoreOptions = {}) {
    const watchIntervalMs = options.watchIntervalMs ?? 1_000
    if (!Number.isSafeInteger(watchIntervalMs) || watchIntervalMs < 0) {
      throw new SaikuConfigError('watchIntervalMs', 'a non-negative integer', watchIntervalMs)
    }
    this.#tiers = options.tiers ?? DEFAULT_TIERS
    this.#lastUsedFlushMs = options.lastUsedFlushMs ?? 10_000
    this.#onError = options.onError ?? (() => {})
    this.db = openDatabase(filename)
    this.db.pragma('journal_mode = WAL')
    this.db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5_000}`)
    this.db.pragma('foreign_keys = ON')
    migrate(this.db)
    const db = this.db
    this.#statements = {
      findKey: db.prepare<[string], KeyRow>('SELECT * FROM saiku_api_keys WHERE key_id = ?'),
      findTenant: db.prepare<[string], TenantRow>('SELECT * FROM saiku_tenants WHERE tenant_id = ?'),
      findTenantBySlug: db.prepare<[string], TenantRow>('SELECT * FROM saiku_tenants WHERE tenant_slug = ?'),
      listTenants: db.prepare<[], TenantRow>('SELECT * FROM saiku_tenants ORDER BY tenant_slug'),
      insertKey: db.prepare(
        `INSERT INTO saiku_api_keys (key_id, tenant_id, label, environment, secret_digest, permissions, created_at, expires_at, revoked_at, last_used_at)
         VALUES (@key_id, @tenant_id, @label, @environment, @secret_digest, @permissions, @created_at, @expires_at, @revoked_at, @last_used_at)`,
      ),
      listKeys: db.prepare<[string], KeyRow>(
        'SELECT * FROM saiku_api_keys WHERE tenant_id = ? AND revoked_at IS NULL ORDER BY created_at, rowid',
      ),
      revokeKey: db.prepare<[number, string]>('UPDATE saiku_api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL'),
      recordKeyUse: db.prepare<[number, string, number]>(
        'UPDATE saiku_api_keys SET last_used_at = ? WHERE key_id = ? AND (last_used_at IS NULL OR last_used_at < ?)',
      ),
      upsertTenant: db.prepare(
        `INSERT INTO saiku_tenants (tenant_id, tenant_slug, tier, connection_name, subscription_status, trial_ends_at, limit_per_minute, limit_per_hour)
         VALUES (@tenant_id, @tenant_slug, @tier, @connection_name, @subscription_status, @trial_ends_at, @limit_per_minute, @limit_per_hour)
         ON CONFLICT (tenant_id) DO UPDATE SET tenant_slug = excluded.tenant_slug, tier = excluded.tier,
           connection_name = excluded.connection_name, subscription_status = excluded.subscription_status,
           trial_ends_at = excluded.trial_ends_at, limit_per_minute = excluded.limit_per_minute, limit_per_hour = excluded.limit_per_hour`,
      ),
      logChange: db.prepare<[string, string, number]>('INSERT INTO saiku_changes (kind, ref, changed_at) VALUES (?, ?, ?)'),
      changesSince: db.prepare<[number], { id: number; kind: 'key' | 'tenant'; ref: string }>(
        'SELECT id, kind, ref FROM saiku_changes WHERE id > ? ORDER BY id',
      ),
      lastChangeId: db.prepare<[], { id: number | null }>('SELECT MAX(id) AS id FROM saiku_changes'),
      pruneChanges: db.prepare<[number]>('DELETE FROM saiku_changes WHERE changed_at < ?'),
    }
    this.#lastChangeId = this.#statements.lastChangeId.get()?.id ?? 0
    this.#dataVersion = this.db.pragma('data_version', { simple: true }) as number
    if (watchIntervalMs > 0) {
      this.#watcher = setInterval(() => {
        try {
          this.pollChanges()
        } catch (error) {
          // A locked or closing file: the next poll tries again; the cache TTL still bounds staleness.
          this.#onError(error instanceof Error ? error : new Error(String(error)))
        }
      }, watchIntervalMs)
      this.#watcher.unref()
    }
  }

  async findKey(keyId: string): Promise<ApiKeyRecord | null> {
    const row = this.#statements.findKey.get(keyId)
    return row === undefined ? null : keyFromRow(row)
  }

  async findTenant(tenantId: string): Promise<TenantRecord | null> {
    const row = this.#statements.findTenant.get(tenantId)
    return row === undefined ? null : tenantFromRow(row)
  }

  async findTenantBySlug(tenantSlug: string): Promise<TenantRecord | null> {
    const row = this.#statements.findTenantBySlug.get(tenantSlug)
    return row === undefined ? null : tenantFromRow(row)
  }

  async listTenants(): Promise<TenantRecord[]> {
    return this.#statements.listTenants.all().map(tenantFromRow)
  }

  async createKey(record: ApiKeyRecord): Promise<void> {
    this.#statements.insertKey.run({
      key_id: record.keyId,
      tenant_id: record.tenantId,
      label: record.label,
      environment: record.environment,
      secret_digest: record.secretDigest,
      permissions: JSON.stringify(record.permissions),
      created_at: record.createdAt.getTime(),
      expires_at: msOrNull(record.expiresAt),
      revoked_at: msOrNull(record.revokedAt),
      last_used_at: msOrNull(record.lastUsedAt),
    })
  }

  async listKeys(tenantId: string): Promise<ApiKeySummary[]> {
    this.flushKeyUses()
    return this.#statements.listKeys.all(tenantId).map((row) => toKeySummary(keyFromRow(row)))
  }

  async revokeKey(keyId: string, revokedAt: Date): Promise<boolean> {
    const revoked = this.db.transaction(() => {
      const { changes } = this.#statements.revokeKey.run(revokedAt.getTime(), keyId)
      if (changes > 0) this.#statements.logChange.run('key', keyId, Date.now())
      return changes > 0
    })()
    if (revoked) announceKeyStoreChange(this, { kind: 'key', keyId })
    return revoked
  }

  /** Gathers the use; it is written with others at the next flush, so a request never waits on a lock. */
  async recordKeyUse(keyId: string, usedAt: Date): Promise<void> {
    const at = usedAt.getTime()
    if ((this.#pendingUses.get(keyId) ?? -Infinity) < at) this.#pendingUses.set(keyId, at)
    if (this.#flushTimer === undefined && this.db.open) {
      this.#flushTimer = setTimeout(() => {
        this.#flushTimer = undefined
        try {
          this.flushKeyUses()
        } catch (error) {
          this.#onError(error instanceof Error ? error : new Error(String(error)))
        }
      }, this.#lastUsedFlushMs)
      this.#flushTimer.unref()
    }
  }

  /** Writes every gathered use in one transaction. */
  flushKeyUses(): number {
    if (this.#pendingUses.size === 0) return 0
    const uses = this.#pendingUses
    this.#pendingUses = new Map()
    this.db.transaction(() => {
      for (const [keyId, at] of uses) this.#statements.recordKeyUse.run(at, keyId, at)
    })()
    return uses.size
  }

  async putTenant(tenant: TenantRecord): Promise<void> {
    validateTenantRecord(tenant, this.#tiers)
    this.db.transaction(() => {
      this.#statements.upsertTenant.run({
        tenant_id: tenant.tenantId,
        tenant_slug: tenant.tenantSlug,
        tier: tenant.tier,
        connection_name: tenant.connectionName,
        subscription_status: tenant.subscription.status,
        trial_ends_at: msOrNull(tenant.subscription.trialEndsAt),
        limit_per_minute: tenant.limits?.perMinute ?? null,
        limit_per_hour: tenant.limits?.perHour ?? null,
      })
      this.#statements.logChange.run('tenant', tenant.tenantId, Date.now())
    })()
    announceKeyStoreChange(this, { kind: 'tenant', tenantId: tenant.tenantId })
  }

  /**
   * Announces changes other processes committed since the last poll. SQLite's
   * data_version moves only when another connection writes, so an idle poll is one pragma.
   */
  pollChanges(): KeyChange[] {
    const dataVersion = this.db.pragma('data_version', { simple: true }) as number
    if (dataVersion === this.#dataVersion) return []
    this.#dataVersion = dataVersion
    const changes: KeyChange[] = []
    for (const row of this.#statements.changesSince.all(this.#lastChangeId)) {
      this.#lastChangeId = row.id
      const change: KeyChange = row.kind === 'key' ? { kind: 'key', keyId: row.ref } : { kind: 'tenant', tenantId: row.ref }
      changes.push(change)
      announceKeyStoreChange(this, change)
    }
    // Pruning writes: now and then is enough.
    if (++this.#polls % 100 === 0) this.#statements.pruneChanges.run(Date.now() - CHANGE_RETENTION_MS)
    return changes
  }

  close(): void {
    if (this.#watcher !== undefined) clearInterval(this.#watcher)
    this.#watcher = undefined
    if (this.#flushTimer !== undefined) clearTimeout(this.#flushTimer)
    this.#flushTimer = undefined
    if (this.db.open) {
      try {
        this.flushKeyUses()
      } catch (error) {
        this.#onError(error instanceof Error ? error : new Error(String(error)))
      }
    }
    if (this.db.open) this.db.close()
  }
}

/**
 * Opens the file, turning a missing or mismatched native binding (an install
 * whose build step did not run, or ran for another Node) into a message that
 * says how to fix it.
 */
function openDatabase(filename: string): Database.Database {
  try {
    return new Database(filename)
  } catch (error) {
    const message = error instanceof Error ? error.message : ''
    if (message.includes('Could not locate the bindings file')) {
      throw new Error(
        "@saiku/sqlite: better-sqlite3's native binding is missing: its build step did not run at install. " +
          'pnpm runs dependency builds only when allowed: `pnpm approve-builds` (or `allowBuilds: { better-sqlite3: true }` ' +
          'in pnpm-workspace.yaml), then `pnpm rebuild better-sqlite3`. With npm: `npm rebuild better-sqlite3`.',
        { cause: error },
      )
    }
    if ((error as { code?: unknown }).code === 'ERR_DLOPEN_FAILED' || message.includes('NODE_MODULE_VERSION')) {
      throw new Error(
        `@saiku/sqlite: better-sqlite3's native binding was built for another Node.js than this one (${process.version}): ` +
          'run `pnpm rebuild better-sqlite3` (or `npm rebuild better-sqlite3`) with this Node.',
        { cause: error },
      )
    }
    throw error
  }
}

/** Brings the schema up to date; safe to run from several processes at once. */
export function migrate(db: Database.Database): number {
  db.exec('CREATE TABLE IF NOT EXISTS saiku_schema_version (version INTEGER NOT NULL)')
  return db.transaction(() => {
    const row = db.prepare<[], { version: number }>('SELECT version FROM saiku_schema_version').get()
    const current = row?.version ?? 0
    for (let version = current; version < MIGRATIONS.length; version++) db.exec(MIGRATIONS[version]!)
    if (row === undefined) db.prepare('INSERT INTO saiku_schema_version (version) VALUES (?)').run(MIGRATIONS.length)
    else db.prepare('UPDATE saiku_schema_version SET version = ?').run(MIGRATIONS.length)
    return MIGRATIONS.length
  }).immediate()
}
