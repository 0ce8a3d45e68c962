import Database from 'better-sqlite3'
import {
  announceKeyStoreChange,
  keyFromRow,
  tenantFromRow,
  type KeyRow,
  type TenantRow,
  toKeySummary,
  validateTenantRecord,
  type KeyChange,
  backgroundErrorHook,
  allowedAddressesProblem,
  canonicalAllowedAddresses,
  keyChangesProblem,
  type KeyChanges,
  keyCreatedEvent,
  keyEventData,
  newEventId,
  outboxEventProblem,
  type KeyWriteContext,
  type OutboxEvent,
  usageBucketsProblem,
  type UsageBucket,
  type UsageQuery,
} from '@saiku/core/store'
import {
  DEFAULT_TIERS,
  SaikuConfigError,
  SaikuInputError,
  SaikuStoreError,
  type ApiKeyRecord,
  type ApiKeySummary,
  type PlanChange,
  type Subscription,
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
  // Per-key address allowlists: a JSON array of canonical entries; NULL for any address.
  `ALTER TABLE saiku_api_keys ADD COLUMN allowed_addresses TEXT;`,
  // The subscription's billing fields: the anchor its periods start from, and a change waiting for the period end.
  `ALTER TABLE saiku_tenants ADD COLUMN billing_anchor INTEGER;
   ALTER TABLE saiku_tenants ADD COLUMN scheduled_tier TEXT;
   ALTER TABLE saiku_tenants ADD COLUMN cancel_at_period_end INTEGER NOT NULL DEFAULT 0 CHECK (cancel_at_period_end IN (0, 1));
   ALTER TABLE saiku_tenants ADD COLUMN scheduled_change_at INTEGER;`,
  // A tenant's own day and month quotas; NULL where its limits set none.
  `ALTER TABLE saiku_tenants ADD COLUMN limit_per_day INTEGER;
   ALTER TABLE saiku_tenants ADD COLUMN limit_per_month INTEGER;`,
  // The outbox: events written in the transaction of the change that caused them, read and deleted by a sender.
  `CREATE TABLE saiku_outbox (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     event_id TEXT NOT NULL UNIQUE,
     tenant_id TEXT NOT NULL,
     type TEXT NOT NULL,
     data TEXT NOT NULL,
     occurred_at INTEGER NOT NULL
   );`,
  // Usage over time: one row per tenant, key ('' for none) and hour, added to by every process.
  `CREATE TABLE saiku_usage (
     tenant_id TEXT NOT NULL,
     hour_start INTEGER NOT NULL,
     key_id TEXT NOT NULL,
     admitted INTEGER NOT NULL DEFAULT 0,
     rate_limited INTEGER NOT NULL DEFAULT 0,
     quota_exceeded INTEGER NOT NULL DEFAULT 0,
     forbidden INTEGER NOT NULL DEFAULT 0,
     payment_required INTEGER NOT NULL DEFAULT 0,
     PRIMARY KEY (tenant_id, hour_start, key_id)
   ) WITHOUT ROWID;
   CREATE INDEX saiku_usage_by_hour ON saiku_usage (hour_start);`,
])

interface UsageRow {
  readonly tenant_id: string
  readonly hour_start: number
  readonly key_id: string
  readonly admitted: number
  readonly rate_limited: number
  readonly quota_exceeded: number
  readonly forbidden: number
  readonly payment_required: number
}

const usageFromRow = (row: UsageRow): UsageBucket => ({
  tenantId: row.tenant_id,
  keyId: row.key_id === '' ? null : row.key_id,
  hourStartMs: row.hour_start,
  admitted: row.admitted,
  rateLimited: row.rate_limited,
  quotaExceeded: row.quota_exceeded,
  forbidden: row.forbidden,
  paymentRequired: row.payment_required,
})

export interface SqliteKeyStoreOptions {
  /** Tier table that tenants are validated against when written. Default: the spec's. */
  readonly tiers?: TierTable
  /**
   * How often to look for revocations and tenant changes made by other processes
   * (a CLI, another server) and drop them from this process's caches. 0 turns it off.
   * Default 1000: with it, a revocation elsewhere applies here within about a second.
   */
  readonly watchIntervalMs?: number
  /**
   * How long a call waits for another process's lock before it fails (a
   * SaikuStoreError: a 503). The wait never blocks the event loop: each attempt
   * fails at once and is retried after a short pause. Default 5000.
   */
  readonly busyTimeoutMs?: number
  /** `lastUsedAt` writes are gathered and written together this often, never one per request. Default 10000. */
  readonly lastUsedFlushMs?: number
  /**
   * Receives failures of the background work (change polling, last-use writes), which never throw. A failed
   * last-use write is kept and tried again. It may be async; what it throws or rejects with becomes a process
   * warning (`SAIKU_HOOK_FAILED`), once per distinct message.
   */
  readonly onError?: (error: Error) => unknown
  /**
   * Writes an event to the `saiku_outbox` table in the transaction of each key write: `key.created` (or
   * `key.rotated` for a rotation's new key), `key.revoked`, `key.updated`. A crash between the write and the
   * event's delivery loses nothing; whoever sends the events reads and deletes the rows. Default false.
   */
  readonly outbox?: boolean
}

const msOrNull = (date: Date | null | undefined): number | null => (date == null ? null : date.getTime())

/** The column's value: the canonical entries as JSON, NULL for any address. */
function addressesJson(list: readonly string[] | null | undefined): string | null {
  const canonical = canonicalAllowedAddresses(list)
  return canonical.length === 0 ? null : JSON.stringify(canonical)
}
/** The subscription's billing fields as columns. */
const billingColumns = (subscription: Subscription) => ({
  billing_anchor: msOrNull(subscription.billingAnchor),
  scheduled_tier: subscription.scheduledTier ?? null,
  cancel_at_period_end: subscription.cancelAtPeriodEnd === true ? 1 : 0,
  scheduled_change_at: msOrNull(subscription.scheduledChangeAt),
})

const isLockError = (error: unknown): boolean => {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^SQLITE_(BUSY|LOCKED)/.test(code)
}
const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

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
  readonly #busyTimeoutMs: number
  readonly #onError: (error: Error) => void
  readonly #outbox: boolean

  constructor(filename: string, options: SqliteKeyStoreOptions = {}) {
    const watchIntervalMs = options.watchIntervalMs ?? 1_000
    if (!Number.isSafeInteger(watchIntervalMs) || watchIntervalMs < 0) {
      throw new SaikuConfigError('watchIntervalMs', 'a non-negative integer', watchIntervalMs)
    }
    this.#tiers = options.tiers ?? DEFAULT_TIERS
    this.#lastUsedFlushMs = options.lastUsedFlushMs ?? 10_000
    // The hook may be async; what it throws or rejects with is a process warning, never a stopped store.
    this.#onError = backgroundErrorHook(options.onError)
    const busyTimeoutMs = options.busyTimeoutMs ?? 5_000
    if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0)
      throw new SaikuConfigError('busyTimeoutMs', 'a non-negative integer', busyTimeoutMs)
    this.#busyTimeoutMs = busyTimeoutMs
    if (options.outbox !== undefined && typeof options.outbox !== 'boolean')
      throw new SaikuConfigError('outbox', 'true or false', options.outbox)
    this.#outbox = options.outbox ?? false
    this.db = openDatabase(filename)
    // Opening and migrating may wait for another process: nothing is served yet.
    this.db.pragma(`busy_timeout = ${busyTimeoutMs}`)
    this.db.pragma('journal_mode = WAL')
    this.db.pragma('foreign_keys = ON')
    migrate(this.db)
    // From here on no call waits inside SQLite (that would block the event loop): #run retries instead.
    this.db.pragma('busy_timeout = 0')
    const db = this.db
    this.#statements = {
      findKey: db.prepare<[string], KeyRow>('SELECT * FROM saiku_api_keys WHERE key_id = ?'),
      findTenant: db.prepare<[string], TenantRow>('SELECT * FROM saiku_tenants WHERE tenant_id = ?'),
      findTenantBySlug: db.prepare<[string], TenantRow>('SELECT * FROM saiku_tenants WHERE tenant_slug = ?'),
      listTenants: db.prepare<[], TenantRow>('SELECT * FROM saiku_tenants ORDER BY tenant_slug'),
      insertKey: db.prepare(
        `INSERT INTO saiku_api_keys (key_id, tenant_id, label, environment, secret_digest, permissions, created_at, expires_at, revoked_at, last_used_at, allowed_addresses)
         VALUES (@key_id, @tenant_id, @label, @environment, @secret_digest, @permissions, @created_at, @expires_at, @revoked_at, @last_used_at, @allowed_addresses)`,
      ),
      updateKey: db.prepare(
        `UPDATE saiku_api_keys SET
           label = CASE WHEN @set_label THEN @label ELSE label END,
           allowed_addresses = CASE WHEN @set_allowed_addresses THEN @allowed_addresses ELSE allowed_addresses END,
           expires_at = CASE WHEN @set_expires_at THEN @expires_at ELSE expires_at END
         WHERE key_id = @key_id AND revoked_at IS NULL`,
      ),
      listKeys: db.prepare<[string], KeyRow>(
        'SELECT * FROM saiku_api_keys WHERE tenant_id = ? AND revoked_at IS NULL ORDER BY created_at, rowid',
      ),
      revokeKey: db.prepare<[number, string]>(
        'UPDATE saiku_api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL',
      ),
      recordKeyUse: db.prepare<[number, string, number]>(
        'UPDATE saiku_api_keys SET last_used_at = ? WHERE key_id = ? AND (last_used_at IS NULL OR last_used_at < ?)',
      ),
      // Every subscription column is compared, and the tier too: a plan change moves it in the same write.
      replaceSubscription: db.prepare(
        `UPDATE saiku_tenants SET subscription_status = @status, trial_ends_at = @trial_ends_at,
           billing_anchor = @billing_anchor, scheduled_tier = @scheduled_tier,
           cancel_at_period_end = @cancel_at_period_end, scheduled_change_at = @scheduled_change_at,
           tier = CASE WHEN @plan = 1 THEN @tier ELSE tier END
         WHERE tenant_id = @tenant_id AND subscription_status = @expected_status AND trial_ends_at IS @expected_trial_ends_at
           AND billing_anchor IS @expected_billing_anchor AND scheduled_tier IS @expected_scheduled_tier
           AND cancel_at_period_end = @expected_cancel_at_period_end
           AND scheduled_change_at IS @expected_scheduled_change_at AND (@plan = 0 OR tier = @expected_tier)`,
      ),
      upsertTenant: db.prepare(
        `INSERT INTO saiku_tenants (tenant_id, tenant_slug, tier, connection_name, subscription_status, trial_ends_at, limit_per_minute, limit_per_hour,
           billing_anchor, scheduled_tier, cancel_at_period_end, scheduled_change_at, limit_per_day, limit_per_month)
         VALUES (@tenant_id, @tenant_slug, @tier, @connection_name, @subscription_status, @trial_ends_at, @limit_per_minute, @limit_per_hour,
           @billing_anchor, @scheduled_tier, @cancel_at_period_end, @scheduled_change_at, @limit_per_day, @limit_per_month)
         ON CONFLICT (tenant_id) DO UPDATE SET tenant_slug = excluded.tenant_slug, tier = excluded.tier,
           connection_name = excluded.connection_name, subscription_status = excluded.subscription_status,
           trial_ends_at = excluded.trial_ends_at, limit_per_minute = excluded.limit_per_minute, limit_per_hour = excluded.limit_per_hour,
           billing_anchor = excluded.billing_anchor, scheduled_tier = excluded.scheduled_tier,
           cancel_at_period_end = excluded.cancel_at_period_end, scheduled_change_at = excluded.scheduled_change_at,
           limit_per_day = excluded.limit_per_day, limit_per_month = excluded.limit_per_month`,
      ),
      logChange: db.prepare<[string, string, number]>(
        'INSERT INTO saiku_changes (kind, ref, changed_at) VALUES (?, ?, ?)',
      ),
      changesSince: db.prepare<[number], { id: number; kind: 'key' | 'tenant'; ref: string }>(
        'SELECT id, kind, ref FROM saiku_changes WHERE id > ? ORDER BY id',
      ),
      lastChangeId: db.prepare<[], { id: number | null }>('SELECT MAX(id) AS id FROM saiku_changes'),
      pruneChanges: db.prepare<[number]>('DELETE FROM saiku_changes WHERE changed_at < ?'),
      insertEvent: db.prepare<[string, string, string, string, number]>(
        'INSERT INTO saiku_outbox (event_id, tenant_id, type, data, occurred_at) VALUES (?, ?, ?, ?, ?)',
      ),
      addUsage: db.prepare(
        `INSERT INTO saiku_usage (tenant_id, hour_start, key_id, admitted, rate_limited, quota_exceeded, forbidden, payment_required)
         VALUES (@tenant_id, @hour_start, @key_id, @admitted, @rate_limited, @quota_exceeded, @forbidden, @payment_required)
         ON CONFLICT (tenant_id, hour_start, key_id) DO UPDATE SET admitted = admitted + excluded.admitted,
           rate_limited = rate_limited + excluded.rate_limited, quota_exceeded = quota_exceeded + excluded.quota_exceeded,
           forbidden = forbidden + excluded.forbidden, payment_required = payment_required + excluded.payment_required`,
      ),
      readUsage: db.prepare<[string, number, number], UsageRow>(
        'SELECT * FROM saiku_usage WHERE tenant_id = ? AND hour_start >= ? AND hour_start < ? ORDER BY hour_start, key_id',
      ),
      readKeyUsage: db.prepare<[string, number, number, string], UsageRow>(
        'SELECT * FROM saiku_usage WHERE tenant_id = ? AND hour_start >= ? AND hour_start < ? AND key_id = ? ORDER BY hour_start',
      ),
      pruneUsage: db.prepare<[number]>('DELETE FROM saiku_usage WHERE hour_start < ?'),
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

  /**
   * Runs one synchronous statement or transaction. A lock held elsewhere fails it at
   * once (busy_timeout 0); it is tried again after a growing pause, so the event loop
   * keeps serving meanwhile, until `busyTimeoutMs` has passed: then a SaikuStoreError.
   */
  async #run<T>(what: string, work: () => T): Promise<T> {
    const deadline = Date.now() + this.#busyTimeoutMs
    for (let delayMs = 2; ; delayMs = Math.min(delayMs * 2, 100)) {
      if (!this.db.open) throw new SaikuStoreError('key_store', `SQLite ${what}: the store is closed`)
      try {
        return work()
      } catch (error) {
        if (!isLockError(error)) throw error
        const left = deadline - Date.now()
        if (left <= 0) {
          throw new SaikuStoreError(
            'key_store',
            `SQLite ${what}: the database stayed locked by another connection for ${this.#busyTimeoutMs} ms`,
            { cause: error },
          )
        }
        await pause(Math.min(left, delayMs * (0.5 + Math.random())))
      }
    }
  }

  async findKey(keyId: string): Promise<ApiKeyRecord | null> {
    const row = await this.#run('findKey', () => this.#statements.findKey.get(keyId))
    return row === undefined ? null : keyFromRow(row)
  }

  async findTenant(tenantId: string): Promise<TenantRecord | null> {
    const row = await this.#run('findTenant', () => this.#statements.findTenant.get(tenantId))
    return row === undefined ? null : tenantFromRow(row)
  }

  async findTenantBySlug(tenantSlug: string): Promise<TenantRecord | null> {
    const row = await this.#run('findTenantBySlug', () => this.#statements.findTenantBySlug.get(tenantSlug))
    return row === undefined ? null : tenantFromRow(row)
  }

  async listTenants(): Promise<TenantRecord[]> {
    return (await this.#run('listTenants', () => this.#statements.listTenants.all())).map(tenantFromRow)
  }

  /** Writes events to the outbox inside the caller's transaction. */
  #writeEvents(events: readonly OutboxEvent[]): void {
    for (const event of events)
      this.#statements.insertEvent.run(
        event.id,
        event.tenantId,
        event.type,
        JSON.stringify(event.data),
        event.occurredAt.getTime(),
      )
  }

  /**
   * Writes events to the outbox in one transaction of their own (a change that is not a key write:
   * a quota spent, a trial ending). Works whether or not `outbox` is on: the option is about key writes.
   */
  async appendEvents(events: readonly OutboxEvent[]): Promise<void> {
    for (const event of events) {
      const problem = outboxEventProblem(event)
      if (problem !== null) throw new SaikuInputError('events', `appendEvents: ${problem}`)
    }
    const write = this.db.transaction(() => this.#writeEvents(events))
    await this.#run('appendEvents', () => write.immediate())
  }

  async createKey(record: ApiKeyRecord, context?: KeyWriteContext): Promise<void> {
    const addressProblem = allowedAddressesProblem(record.allowedAddresses)
    if (addressProblem !== null) throw new SaikuInputError('allowedAddresses', `createKey: ${addressProblem}`)
    const row = {
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
      allowed_addresses: addressesJson(record.allowedAddresses),
    }
    const events = this.#outbox ? [keyCreatedEvent(record, context)] : []
    const insert = this.db.transaction(() => {
      this.#statements.insertKey.run(row)
      this.#writeEvents(events)
    })
    await this.#run('createKey', () => insert.immediate())
  }

  /** Changes a key in one statement, logged for other processes' caches like a revocation. */
  async updateKey(keyId: string, changes: KeyChanges): Promise<boolean> {
    const problem = keyChangesProblem(changes)
    if (problem !== null) throw new SaikuInputError('changes', `updateKey: ${problem}`)
    const update = this.db.transaction(() => {
      const { changes: updated } = this.#statements.updateKey.run({
        key_id: keyId,
        set_label: changes.label === undefined ? 0 : 1,
        label: changes.label ?? null,
        set_allowed_addresses: changes.allowedAddresses === undefined ? 0 : 1,
        allowed_addresses: addressesJson(changes.allowedAddresses),
        set_expires_at: changes.expiresAt === undefined ? 0 : 1,
        expires_at: msOrNull(changes.expiresAt),
      })
      if (updated > 0) {
        this.#statements.logChange.run('key', keyId, Date.now())
        if (this.#outbox) this.#writeEvents([this.#keyEvent(keyId, 'key.updated', { changed: Object.keys(changes) })])
      }
      return updated > 0
    })
    const updated = await this.#run('updateKey', () => update.immediate())
    if (updated) announceKeyStoreChange(this, { kind: 'key', keyId })
    return updated
  }

  /** An event about a key that exists (read inside the write's transaction). */
  #keyEvent(keyId: string, type: string, extra: Record<string, unknown>, at = new Date()): OutboxEvent {
    const record = keyFromRow(this.#statements.findKey.get(keyId)!)
    return {
      id: newEventId(),
      type,
      tenantId: record.tenantId,
      occurredAt: at,
      data: { ...keyEventData(record), ...extra },
    }
  }

  async listKeys(tenantId: string): Promise<ApiKeySummary[]> {
    // Our own gathered uses first, so a list right after use shows them; a locked file only delays them.
    await this.flushKeyUses().catch(() => {})
    return (await this.#run('listKeys', () => this.#statements.listKeys.all(tenantId))).map((row) =>
      toKeySummary(keyFromRow(row)),
    )
  }

  /**
   * Revokes the key; `events` (such as `key.leaked`) are written to the outbox in the same transaction,
   * only when this call revoked it, after the store's own `key.revoked` when `outbox` is on.
   */
  async revokeKey(keyId: string, revokedAt: Date, events: readonly OutboxEvent[] = []): Promise<boolean> {
    for (const event of events) {
      const problem = outboxEventProblem(event)
      if (problem !== null) throw new SaikuInputError('events', `revokeKey: ${problem}`)
    }
    const revoke = this.db.transaction(() => {
      const { changes } = this.#statements.revokeKey.run(revokedAt.getTime(), keyId)
      if (changes > 0) {
        this.#statements.logChange.run('key', keyId, Date.now())
        if (this.#outbox)
          this.#writeEvents([this.#keyEvent(keyId, 'key.revoked', { revokedAt: revokedAt.toISOString() }, revokedAt)])
        this.#writeEvents(events)
      }
      return changes > 0
    })
    const revoked = await this.#run('revokeKey', () => revoke.immediate())
    if (revoked) announceKeyStoreChange(this, { kind: 'key', keyId })
    return revoked
  }

  /** Gathers the use; it is written with others at the next flush, so a request never waits on a lock. */
  async recordKeyUse(keyId: string, usedAt: Date): Promise<void> {
    const at = usedAt.getTime()
    if ((this.#pendingUses.get(keyId) ?? -Infinity) < at) this.#pendingUses.set(keyId, at)
    this.#scheduleFlush()
  }

  #scheduleFlush(): void {
    if (this.#flushTimer !== undefined || !this.db.open || this.#pendingUses.size === 0) return
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined
      // A failure is reported and its uses kept: the next flush writes them.
      this.flushKeyUses().catch(() => this.#scheduleFlush())
    }, this.#lastUsedFlushMs)
    this.#flushTimer.unref()
  }

  /**
   * Writes every gathered use in one transaction and resolves with how many. When
   * the write fails (the file stays locked past `busyTimeoutMs`, a full disk) the
   * uses are kept for the next flush, the failure goes to `onError`, and this rejects.
   */
  async flushKeyUses(): Promise<number> {
    if (this.#pendingUses.size === 0) return 0
    const uses = this.#pendingUses
    this.#pendingUses = new Map()
    const write = this.db.transaction(() => {
      for (const [keyId, at] of uses) this.#statements.recordKeyUse.run(at, keyId, at)
    })
    try {
      await this.#run('flushKeyUses', () => write.immediate())
    } catch (error) {
      this.#keepUses(uses)
      const failure = error instanceof Error ? error : new Error(String(error))
      this.#onError(failure)
      throw failure
    }
    return uses.size
  }

  /** Adds each bucket's counts to its row in one transaction (an additive upsert): other processes' writes add up. */
  async addUsage(buckets: readonly UsageBucket[]): Promise<void> {
    const problem = usageBucketsProblem(buckets)
    if (problem !== null) throw new SaikuInputError('buckets', `addUsage: ${problem}`)
    const write = this.db.transaction(() => {
      for (const bucket of buckets)
        this.#statements.addUsage.run({
          tenant_id: bucket.tenantId,
          hour_start: bucket.hourStartMs,
          key_id: bucket.keyId ?? '',
          admitted: bucket.admitted,
          rate_limited: bucket.rateLimited,
          quota_exceeded: bucket.quotaExceeded,
          forbidden: bucket.forbidden,
          payment_required: bucket.paymentRequired,
        })
    })
    await this.#run('addUsage', () => write.immediate())
  }

  async readUsage(query: UsageQuery): Promise<UsageBucket[]> {
    const { tenantId, fromMs, toMs, keyId } = query
    const rows = await this.#run('readUsage', () =>
      keyId === undefined
        ? this.#statements.readUsage.all(tenantId, fromMs, toMs)
        : this.#statements.readKeyUsage.all(tenantId, fromMs, toMs, keyId),
    )
    return rows.map(usageFromRow)
  }

  async pruneUsage(beforeMs: number): Promise<number> {
    return (await this.#run('pruneUsage', () => this.#statements.pruneUsage.run(beforeMs))).changes
  }

  /** Puts uses that could not be written back, keeping the later time where one came in meanwhile. */
  #keepUses(uses: ReadonlyMap<string, number>): void {
    for (const [keyId, at] of uses)
      if ((this.#pendingUses.get(keyId) ?? -Infinity) < at) this.#pendingUses.set(keyId, at)
  }

  async putTenant(tenant: TenantRecord): Promise<void> {
    validateTenantRecord(tenant, this.#tiers)
    const write = this.db.transaction(() => {
      this.#statements.upsertTenant.run({
        tenant_id: tenant.tenantId,
        tenant_slug: tenant.tenantSlug,
        tier: tenant.tier,
        connection_name: tenant.connectionName,
        subscription_status: tenant.subscription.status,
        trial_ends_at: msOrNull(tenant.subscription.trialEndsAt),
        limit_per_minute: tenant.limits?.perMinute ?? null,
        limit_per_hour: tenant.limits?.perHour ?? null,
        limit_per_day: tenant.limits?.perDay ?? null,
        limit_per_month: tenant.limits?.perMonth ?? null,
        ...billingColumns(tenant.subscription),
      })
      this.#statements.logChange.run('tenant', tenant.tenantId, Date.now())
    })
    await this.#run('putTenant', () => write.immediate())
    announceKeyStoreChange(this, { kind: 'tenant', tenantId: tenant.tenantId })
  }

  async replaceSubscription(
    tenantId: string,
    expected: Subscription,
    next: Subscription,
    plan?: PlanChange,
  ): Promise<boolean> {
    const current = await this.findTenant(tenantId)
    if (current === null) return false
    if (plan !== undefined && current.tier !== plan.expectedTier) return false
    const tier = plan === undefined ? current.tier : plan.tier
    validateTenantRecord({ ...current, tier, subscription: next }, this.#tiers)
    const was = billingColumns(expected)
    const write = this.db.transaction(() => {
      const { changes } = this.#statements.replaceSubscription.run({
        tenant_id: tenantId,
        status: next.status,
        trial_ends_at: msOrNull(next.trialEndsAt),
        ...billingColumns(next),
        plan: plan === undefined ? 0 : 1,
        tier,
        expected_status: expected.status,
        expected_trial_ends_at: msOrNull(expected.trialEndsAt),
        expected_billing_anchor: was.billing_anchor,
        expected_scheduled_tier: was.scheduled_tier,
        expected_cancel_at_period_end: was.cancel_at_period_end,
        expected_scheduled_change_at: was.scheduled_change_at,
        expected_tier: plan?.expectedTier ?? null,
      })
      if (changes > 0) this.#statements.logChange.run('tenant', tenantId, Date.now())
      return changes > 0
    })
    const replaced = await this.#run('replaceSubscription', () => write.immediate())
    if (replaced) announceKeyStoreChange(this, { kind: 'tenant', tenantId })
    return replaced
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
      const change: KeyChange =
        row.kind === 'key' ? { kind: 'key', keyId: row.ref } : { kind: 'tenant', tenantId: row.ref }
      changes.push(change)
      announceKeyStoreChange(this, change)
    }
    // Pruning writes: now and then is enough, and a locked file just skips it.
    if (++this.#polls % 100 === 0) {
      try {
        this.#statements.pruneChanges.run(Date.now() - CHANGE_RETENTION_MS)
      } catch (error) {
        if (!isLockError(error)) throw error
      }
    }
    return changes
  }

  close(): void {
    if (this.#watcher !== undefined) clearInterval(this.#watcher)
    this.#watcher = undefined
    if (this.#flushTimer !== undefined) clearTimeout(this.#flushTimer)
    this.#flushTimer = undefined
    if (this.db.open && this.#pendingUses.size > 0) {
      // Shutting down: the last uses may wait for a lock, up to busyTimeoutMs.
      const uses = this.#pendingUses
      this.#pendingUses = new Map()
      try {
        this.db.pragma(`busy_timeout = ${this.#busyTimeoutMs}`)
        this.db
          .transaction(() => {
            for (const [keyId, at] of uses) this.#statements.recordKeyUse.run(at, keyId, at)
          })
          .immediate()
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
  return db
    .transaction(() => {
      const row = db.prepare<[], { version: number }>('SELECT version FROM saiku_schema_version').get()
      const current = row?.version ?? 0
      for (let version = current; version < MIGRATIONS.length; version++) db.exec(MIGRATIONS[version]!)
      if (row === undefined) db.prepare('INSERT INTO saiku_schema_version (version) VALUES (?)').run(MIGRATIONS.length)
      else db.prepare('UPDATE saiku_schema_version SET version = ?').run(MIGRATIONS.length)
      return MIGRATIONS.length
    })
    .immediate()
}
