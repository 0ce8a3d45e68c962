import { randomUUID } from 'node:crypto'
import type { Client, Pool, PoolConfig } from 'pg'
import {
  announceKeyStoreChange,
  announceKeyStoreFeed,
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
  isKeyId,
  SaikuConfigError,
  SaikuInputError,
  type ApiKeyRecord,
  type ApiKeySummary,
  type PlanChange,
  type Subscription,
  type TenantAdminStore,
  type TenantRecord,
  type TierTable,
} from '@saiku/core'

/** The schema, one step per version, applied in order under an advisory lock; never edited once released. */
export const MIGRATIONS: readonly ((schema: string) => string)[] = Object.freeze([
  (s: string) => `
    CREATE TABLE ${s}.saiku_tenants (
      tenant_id text PRIMARY KEY,
      tenant_slug text NOT NULL UNIQUE,
      tier text NOT NULL,
      connection_name text NOT NULL,
      subscription_status text NOT NULL,
      trial_ends_at timestamptz,
      limit_per_minute integer CHECK (limit_per_minute > 0),
      limit_per_hour integer CHECK (limit_per_hour > 0)
    );
    CREATE TABLE ${s}.saiku_api_keys (
      key_id text PRIMARY KEY,
      tenant_id text NOT NULL REFERENCES ${s}.saiku_tenants (tenant_id),
      label text NOT NULL,
      environment text NOT NULL CHECK (environment IN ('live', 'test')),
      secret_digest text NOT NULL UNIQUE,
      permissions text[] NOT NULL,
      created_at timestamptz NOT NULL,
      expires_at timestamptz,
      revoked_at timestamptz,
      last_used_at timestamptz
    );
    CREATE INDEX saiku_api_keys_live_by_tenant ON ${s}.saiku_api_keys (tenant_id, created_at) WHERE revoked_at IS NULL;`,
  // Per-key address allowlists: canonical entries; NULL for any address.
  (s: string) => `ALTER TABLE ${s}.saiku_api_keys ADD COLUMN allowed_addresses text[];`,
  // The subscription's billing fields: the anchor its periods start from, and a change waiting for the period end.
  (s: string) => `
    ALTER TABLE ${s}.saiku_tenants
      ADD COLUMN billing_anchor timestamptz,
      ADD COLUMN scheduled_tier text,
      ADD COLUMN cancel_at_period_end boolean NOT NULL DEFAULT false,
      ADD COLUMN scheduled_change_at timestamptz;`,
  // A tenant's own day and month quotas; NULL where its limits set none.
  (s: string) => `
    ALTER TABLE ${s}.saiku_tenants
      ADD COLUMN limit_per_day integer CHECK (limit_per_day > 0),
      ADD COLUMN limit_per_month integer CHECK (limit_per_month > 0);`,
  // The outbox: events written in the transaction of the change that caused them, read and deleted by a sender.
  // Times in milliseconds, as the SQLite store keeps them, so that one sender reads both alike.
  (s: string) => `
    CREATE TABLE ${s}.saiku_outbox (
      id bigserial PRIMARY KEY,
      event_id text NOT NULL UNIQUE,
      tenant_id text NOT NULL,
      type text NOT NULL,
      data jsonb NOT NULL,
      occurred_at bigint NOT NULL
    );`,
  // Usage over time: one row per tenant, key ('' for none) and hour, added to by every process.
  (s: string) => `
    CREATE TABLE ${s}.saiku_usage (
      tenant_id text NOT NULL,
      hour_start timestamptz NOT NULL,
      key_id text NOT NULL,
      admitted bigint NOT NULL DEFAULT 0,
      rate_limited bigint NOT NULL DEFAULT 0,
      quota_exceeded bigint NOT NULL DEFAULT 0,
      forbidden bigint NOT NULL DEFAULT 0,
      payment_required bigint NOT NULL DEFAULT 0,
      PRIMARY KEY (tenant_id, hour_start, key_id)
    );
    CREATE INDEX saiku_usage_by_hour ON ${s}.saiku_usage (hour_start);`,
])

interface UsageRow {
  readonly tenant_id: string
  readonly hour_start: Date
  readonly key_id: string
  // bigint columns: pg reads them as strings.
  readonly admitted: string
  readonly rate_limited: string
  readonly quota_exceeded: string
  readonly forbidden: string
  readonly payment_required: string
}

const usageFromRow = (row: UsageRow): UsageBucket => ({
  tenantId: row.tenant_id,
  keyId: row.key_id === '' ? null : row.key_id,
  hourStartMs: row.hour_start.getTime(),
  admitted: Number(row.admitted),
  rateLimited: Number(row.rate_limited),
  quotaExceeded: Number(row.quota_exceeded),
  forbidden: Number(row.forbidden),
  paymentRequired: Number(row.payment_required),
})

/** The column's value: the canonical entries, NULL for any address. */
function addressesColumn(list: readonly string[] | null | undefined): string[] | null {
  const canonical = canonicalAllowedAddresses(list)
  return canonical.length === 0 ? null : canonical
}

/** The subscription's billing fields, in the column order billing_anchor, scheduled_tier, cancel_at_period_end, scheduled_change_at. */
const billingValues = (subscription: Subscription): [Date | null, string | null, boolean, Date | null] => [
  subscription.billingAnchor ?? null,
  subscription.scheduledTier ?? null,
  subscription.cancelAtPeriodEnd === true,
  subscription.scheduledChangeAt ?? null,
]

export interface PostgresKeyStoreOptions {
  readonly pool: Pool
  /**
   * Schema that holds the tables (created if missing). Default: the pool's
   * connection string's `?schema=NAME`, else `"public"`; when both are given they must agree.
   */
  readonly schema?: string
  /** Tier table that tenants are validated against when written. Default: the spec's. */
  readonly tiers?: TierTable
  /** `lastUsedAt` writes are gathered and written together this often, never one per request. Default 10000. */
  readonly lastUsedFlushMs?: number
  /**
   * LISTEN for revocations and tenant changes made by other processes and drop
   * them from this process's caches at once (NOTIFY is sent by every write).
   * Holds one pool connection. Default true.
   */
  readonly listen?: boolean
  /**
   * Whose settings the LISTEN connection is opened with (it is a connection of its own,
   * outside the pool's `max`). Default: `pool`. Give a direct pool when `pool` goes
   * through a transaction-pooling proxy (PgBouncer), which cannot LISTEN.
   */
  readonly listenPool?: Pool
  /**
   * How often the LISTEN connection is proven alive: a NOTIFY sent through `pool`
   * must come back through it before the next check. One that does not (a stalled
   * connection that never errors) is found within twice this long. A stalled or lost
   * connection is destroyed and reported to `onError`, every cache is cleared, and
   * until listening again what is read is trusted for at most this long (5000 when
   * the check is off): a revocation made meanwhile applies within twice this long.
   * 0 turns the check off. Default 5000.
   */
  readonly listenCheckMs?: number
  /**
   * How long opening the LISTEN connection and sending LISTEN may take before the
   * attempt is dropped and another is made, after a growing pause (at most 10 s).
   * Default 5000.
   */
  readonly listenTimeoutMs?: number
  /**
   * Hears background failures: a lost or stalled LISTEN connection, a failed reconnection, a failed `lastUsedAt`
   * flush. It may be async; what it throws or rejects with becomes a process warning (`SAIKU_HOOK_FAILED`), once
   * per distinct message.
   */
  readonly onError?: (error: Error) => unknown
  /**
   * Writes an event to the `saiku_outbox` table in the transaction of each key write: `key.created` (or
   * `key.rotated` for a rotation's new key), `key.revoked`, `key.updated`. A crash between the write and the
   * event's delivery loses nothing; whoever sends the events reads and deletes the rows. Default false.
   */
  readonly outbox?: boolean
}

/** The LISTEN connection: a client of its own, so that a stalled one can be destroyed at once. */
interface Listener {
  readonly client: Client
  destroyed: boolean
}

type ClientClass = new (config: PoolConfig) => Client

// A pause after the n-th failed reconnection in a row: doubling from this, up to the cap, with jitter.
const RECONNECT_BASE_MS = 250
const RECONNECT_MAX_MS = 10_000
// The same reconnection failure is reported again only after this long.
const REPORT_AGAIN_MS = 30_000

function reconnectDelayMs(failures: number): number {
  const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** Math.min(failures - 1, 16))
  // Half fixed, half random: processes that lost the server together do not return together.
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2)
}

/** Closes the socket now: ending politely waits on a peer that may never answer. */
function destroyClient(client: Client): void {
  const stream = (client as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream
  if (typeof stream?.destroy === 'function') stream.destroy()
  else client.end().catch(() => {})
}

/** A heartbeat: started when handed to the pool, sent when PostgreSQL took it. */
interface Ping {
  readonly payload: string
  readonly startedAtMs: number
  sentAtMs: number | undefined
}

/** `promise`, or a rejection once `ms` have passed (the caller then destroys what it waited on). */
function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms)
    timer.unref()
  })
  promise.catch(() => {}) // it may still reject after the deadline
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer))
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,40}$/

/** `?schema=NAME` of the pool's connection string, which pg itself ignores. */
function schemaOfPool(pool: Pool): string | undefined {
  const connectionString: unknown = (pool as { options?: { connectionString?: unknown } }).options?.connectionString
  if (typeof connectionString !== 'string') return undefined
  let url: URL
  try {
    url = new URL(connectionString)
  } catch {
    return undefined // not a URL (a libpq key=value string): pg reports what is wrong with it
  }
  return url.searchParams.get('schema') ?? undefined
}

function parseNotification(payload: string | undefined): KeyChange | null {
  if (payload === undefined) return null
  const colon = payload.indexOf(':')
  const kind = payload.slice(0, colon)
  const ref = payload.slice(colon + 1)
  if (kind === 'key' && isKeyId(ref)) return { kind: 'key', keyId: ref }
  if (kind === 'tenant' && ref.length > 0) return { kind: 'tenant', tenantId: ref }
  return null
}

/**
 * A KeyStore on PostgreSQL through `pg`. The schema migrates on first use (or
 * call `migrate()` yourself); every revocation and tenant write sends a NOTIFY
 * that the other processes' stores turn into cache invalidations.
 */
export class PostgresKeyStore implements TenantAdminStore {
  readonly pool: Pool
  readonly schema: string
  readonly channel: string
  readonly #tiers: TierTable
  readonly #t: { tenants: string; keys: string; outbox: string; usage: string }
  readonly #lastUsedFlushMs: number
  readonly #listen: boolean
  readonly #onError: (error: Error) => void
  readonly #outbox: boolean
  #ready: Promise<void> | undefined
  #pendingUses = new Map<string, Date>()
  #flushTimer: NodeJS.Timeout | undefined
  #closed = false
  readonly #listenPool: Pool
  readonly #listenClient: ClientClass | undefined
  readonly #listenCheckMs: number
  readonly #listenTimeoutMs: number
  /** While not listening, how long a record read is trusted. */
  readonly #unheardTrustMs: number
  /** The connection that listens now; undefined while reconnecting. */
  #listener: Listener | undefined
  /** A connection being opened; close() destroys it. */
  #attempt: Listener | undefined
  #retryTimer: NodeJS.Timeout | undefined
  /** Failed reconnections in a row: the pause before the next grows with them. */
  #failures = 0
  /** Caches were told that changes may go unheard; they are told again once listening. */
  #unheard = false
  #lastReport: { readonly cause: string; readonly atMs: number } | undefined
  #heartbeat: NodeJS.Timeout | undefined
  /** The heartbeat sent through the pool and not yet heard back through the LISTEN connection. */
  #ping: Ping | undefined

  constructor(options: PostgresKeyStoreOptions) {
    const urlSchema = schemaOfPool(options.pool)
    if (urlSchema !== undefined && !SCHEMA_NAME.test(urlSchema)) {
      throw new SaikuConfigError(
        'pool connection string ?schema',
        'a lower-case SQL identifier of at most 41 characters',
        urlSchema,
      )
    }
    if (options.schema !== undefined && urlSchema !== undefined && options.schema !== urlSchema) {
      throw new SaikuConfigError(
        'schema',
        `the schema of the pool's connection string ("${urlSchema}") or none`,
        options.schema,
      )
    }
    const schema = options.schema ?? urlSchema ?? 'public'
    if (!SCHEMA_NAME.test(schema))
      throw new SaikuConfigError('schema', 'a lower-case SQL identifier of at most 41 characters', schema)
    const flushMs = options.lastUsedFlushMs ?? 10_000
    if (!Number.isSafeInteger(flushMs) || flushMs < 1)
      throw new SaikuConfigError('lastUsedFlushMs', 'a positive integer', flushMs)
    this.pool = options.pool
    this.schema = schema
    this.channel = schema === 'public' ? 'saiku_changes' : `saiku_changes_${schema}`
    this.#tiers = options.tiers ?? DEFAULT_TIERS
    this.#t = {
      tenants: `"${schema}".saiku_tenants`,
      keys: `"${schema}".saiku_api_keys`,
      outbox: `"${schema}".saiku_outbox`,
      usage: `"${schema}".saiku_usage`,
    }
    if (options.outbox !== undefined && typeof options.outbox !== 'boolean')
      throw new SaikuConfigError('outbox', 'true or false', options.outbox)
    this.#outbox = options.outbox ?? false
    this.#lastUsedFlushMs = flushMs
    this.#listen = options.listen ?? true
    this.#listenPool = options.listenPool ?? options.pool
    const checkMs = options.listenCheckMs ?? 5_000
    if (!Number.isSafeInteger(checkMs) || checkMs < 0)
      throw new SaikuConfigError('listenCheckMs', 'a non-negative integer', checkMs)
    this.#listenCheckMs = checkMs
    this.#unheardTrustMs = checkMs > 0 ? checkMs : 5_000
    const timeoutMs = options.listenTimeoutMs ?? 5_000
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1)
      throw new SaikuConfigError('listenTimeoutMs', 'a positive integer', timeoutMs)
    this.#listenTimeoutMs = timeoutMs
    const listenClient: unknown = (this.#listenPool as { Client?: unknown }).Client
    if (this.#listen && typeof listenClient !== 'function')
      throw new SaikuConfigError(
        options.listenPool === undefined ? 'pool' : 'listenPool',
        'a pg Pool (its Client opens the LISTEN connection)',
        this.#listenPool,
      )
    this.#listenClient = listenClient as ClientClass | undefined
    // The hook may be async; what it throws or rejects with is a process warning, never a stopped store.
    this.#onError = backgroundErrorHook(options.onError)
  }

  /** Creates the schema and tables if needed; safe from several processes at once. Runs by itself on first use. */
  async migrate(): Promise<number> {
    const client = await this.pool.connect()
    try {
      await client.query('BEGIN')
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`saiku_migrate_${this.schema}`])
      await client.query(`CREATE SCHEMA IF NOT EXISTS "${this.schema}"`)
      await client.query(`CREATE TABLE IF NOT EXISTS "${this.schema}".saiku_schema_version (version integer NOT NULL)`)
      const { rows } = await client.query<{ version: number }>(
        `SELECT version FROM "${this.schema}".saiku_schema_version`,
      )
      const current = rows[0]?.version ?? 0
      for (let version = current; version < MIGRATIONS.length; version++)
        await client.query(MIGRATIONS[version]!(`"${this.schema}"`))
      if (rows.length === 0)
        await client.query(`INSERT INTO "${this.schema}".saiku_schema_version (version) VALUES ($1)`, [
          MIGRATIONS.length,
        ])
      else await client.query(`UPDATE "${this.schema}".saiku_schema_version SET version = $1`, [MIGRATIONS.length])
      await client.query('COMMIT')
      return MIGRATIONS.length
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {})
      throw error
    } finally {
      client.release()
    }
  }

  /** Migrates and starts listening, once; every method awaits it. */
  ready(): Promise<void> {
    this.#ready ??= (async () => {
      await this.migrate()
      if (this.#listen) await this.#startListening()
    })().catch((error: unknown) => {
      this.#ready = undefined
      throw error
    })
    return this.#ready
  }

  /**
   * Whether a LISTEN connection is open and not found stalled: false from a loss or stall until
   * listening again (meanwhile records are trusted for at most `listenCheckMs`). For a health check.
   */
  get listening(): boolean {
    return this.#listener !== undefined && !this.#unheard
  }

  /** The first LISTEN: ready() waits for it, and rejects (to be tried again) when it fails. */
  async #startListening(): Promise<void> {
    if (this.#closed) return
    this.#listening(await this.#openListener())
  }

  /** Opens a connection and LISTENs on it, within `listenTimeoutMs`, else destroys it and rejects. */
  async #openListener(): Promise<Listener> {
    const client = new this.#listenClient!(this.#listenPool.options)
    const listener: Listener = { client, destroyed: false }
    // Kept for the client's life: an error after the deadline must not go unhandled.
    client.on('error', (error: Error) => this.#lost(listener, 'PostgreSQL LISTEN connection lost', error))
    client.on('end', () => this.#lost(listener, 'PostgreSQL LISTEN connection ended'))
    client.on('notification', (message) => {
      if (listener.destroyed || message.channel !== this.channel) return
      if (message.payload !== undefined && message.payload === this.#ping?.payload) {
        this.#ping = undefined
        this.#proven(listener)
        return
      }
      const change = parseNotification(message.payload)
      if (change !== null) announceKeyStoreChange(this, change)
    })
    this.#attempt = listener
    try {
      await withDeadline(
        client.connect().then(() => client.query(`LISTEN "${this.channel}"`)),
        this.#listenTimeoutMs,
        'opening the LISTEN connection',
      )
    } catch (error) {
      this.#destroy(listener)
      throw error
    } finally {
      if (this.#attempt === listener) this.#attempt = undefined
    }
    if (this.#closed || listener.destroyed) {
      this.#destroy(listener)
      throw new Error('PostgreSQL LISTEN connection closed while opening')
    }
    return listener
  }

  #destroy(listener: Listener): void {
    if (listener.destroyed) return
    listener.destroyed = true
    destroyClient(listener.client)
  }

  /** Listens through `listener` from now on; after an outage, every cache forgets what it may have missed. */
  #listening(listener: Listener): void {
    this.#listener = listener
    this.#ping = undefined
    this.#failures = 0
    this.#lastReport = undefined
    if (this.#unheard) {
      this.#unheard = false
      announceKeyStoreFeed(this, this, { live: true })
    }
    if (this.#listenCheckMs > 0 && this.#heartbeat === undefined) {
      this.#heartbeat = setInterval(() => this.#beat(), this.#listenCheckMs)
      this.#heartbeat.unref()
    }
  }

  /**
   * The heartbeat could not be sent through the pool within a check: whether the listener hears is
   * unknown, so every cache is cleared and its trust capped, as for a loss, until a heartbeat comes back.
   */
  #unproven(): void {
    if (this.#unheard) return
    this.#unheard = true
    announceKeyStoreFeed(this, this, { live: false, maxAgeMs: this.#unheardTrustMs })
    this.#onError(
      new Error(
        `PostgreSQL LISTEN connection unproven: its heartbeat could not be sent through the pool in ${this.#listenCheckMs} ms; caches cleared, records trusted for at most ${this.#unheardTrustMs} ms until a heartbeat comes back`,
      ),
    )
  }

  /** A heartbeat came back through `listener`: it hears, whatever the pool went through. */
  #proven(listener: Listener): void {
    if (!this.#unheard || listener !== this.#listener) return
    this.#unheard = false
    announceKeyStoreFeed(this, this, { live: true })
  }

  /**
   * The listening connection failed or stalled: destroyed at once, every cache cleared and
   * its trust capped while nothing is heard, and a new connection opened.
   */
  #lost(listener: Listener, what: string, cause?: Error): void {
    if (listener !== this.#listener || this.#closed) return
    this.#listener = undefined
    this.#ping = undefined
    this.#destroy(listener)
    this.#unheard = true
    announceKeyStoreFeed(this, this, { live: false, maxAgeMs: this.#unheardTrustMs })
    this.#onError(
      new Error(
        `${what}; caches cleared, records trusted for at most ${this.#unheardTrustMs} ms until listening again; reconnecting`,
        cause === undefined ? undefined : { cause },
      ),
    )
    this.#reconnect()
  }

  /** One attempt to listen again; a failed one is reported (not every time) and the next follows a growing pause. */
  #reconnect(): void {
    if (this.#closed || this.#listener !== undefined || this.#attempt !== undefined || this.#retryTimer !== undefined)
      return
    if (this.#listenPool.ending) return // the app is shutting down its pool
    this.#openListener().then(
      (listener) => this.#listening(listener),
      (error: unknown) => {
        if (this.#closed) return
        this.#failures++
        const delayMs = reconnectDelayMs(this.#failures)
        const cause = error instanceof Error ? error : new Error(String(error))
        this.#reportAttempt(cause, delayMs)
        this.#retryTimer = setTimeout(() => {
          this.#retryTimer = undefined
          this.#reconnect()
        }, delayMs)
        this.#retryTimer.unref()
      },
    )
  }

  /** A failed reconnection, unless the same failure was reported less than 30 s ago: an outage does not flood onError. */
  #reportAttempt(cause: Error, delayMs: number): void {
    const nowMs = Date.now()
    const last = this.#lastReport
    if (last !== undefined && last.cause === cause.message && nowMs - last.atMs < REPORT_AGAIN_MS) return
    this.#lastReport = { cause: cause.message, atMs: nowMs }
    this.#onError(
      new Error(
        `PostgreSQL LISTEN reconnection failed (attempt ${this.#failures}); trying again in ${delayMs} ms, records trusted for at most ${this.#unheardTrustMs} ms meanwhile`,
        { cause },
      ),
    )
  }

  /**
   * Every `listenCheckMs`, for the store's life: proves the listening connection alive (the last
   * heartbeat came back) and sends the next; while not listening, makes sure a reconnection is under way.
   */
  #beat(): void {
    if (this.#closed) return
    const listener = this.#listener
    if (listener === undefined) return this.#reconnect()
    const ping = this.#ping
    if (ping !== undefined) {
      const nowMs = Date.now()
      if (ping.sentAtMs === undefined) {
        // Not sent yet: the pool is slow or cut off too. Nothing proves the listener alive meanwhile, so
        // records are trusted as if it were lost; it is kept (the pool is what waits), and no other heartbeat piles up.
        if (nowMs - ping.startedAtMs >= this.#listenCheckMs / 2) this.#unproven()
        return
      }
      // Sent too recently to have come back for sure.
      if (nowMs - ping.sentAtMs < this.#listenCheckMs / 2) return
      return this.#lost(listener, `PostgreSQL LISTEN connection heard no notification for ${this.#listenCheckMs} ms`)
    }
    const next: Ping = { payload: `ping:${randomUUID()}`, startedAtMs: Date.now(), sentAtMs: undefined }
    this.#ping = next
    // A heartbeat the pool fails to send proves nothing about the listener: the next check tries again.
    this.pool.query('SELECT pg_notify($1, $2)', [this.channel, next.payload]).then(
      () => {
        next.sentAtMs = Date.now()
      },
      () => {
        if (this.#ping === next) this.#ping = undefined
      },
    )
  }

  async findKey(keyId: string): Promise<ApiKeyRecord | null> {
    await this.ready()
    const { rows } = await this.pool.query<KeyRow>(`SELECT * FROM ${this.#t.keys} WHERE key_id = $1`, [keyId])
    return rows[0] === undefined ? null : keyFromRow(rows[0])
  }

  async findTenant(tenantId: string): Promise<TenantRecord | null> {
    await this.ready()
    const { rows } = await this.pool.query<TenantRow>(`SELECT * FROM ${this.#t.tenants} WHERE tenant_id = $1`, [
      tenantId,
    ])
    return rows[0] === undefined ? null : tenantFromRow(rows[0])
  }

  async findTenantBySlug(tenantSlug: string): Promise<TenantRecord | null> {
    await this.ready()
    const { rows } = await this.pool.query<TenantRow>(`SELECT * FROM ${this.#t.tenants} WHERE tenant_slug = $1`, [
      tenantSlug,
    ])
    return rows[0] === undefined ? null : tenantFromRow(rows[0])
  }

  async listTenants(): Promise<TenantRecord[]> {
    await this.ready()
    const { rows } = await this.pool.query<TenantRow>(`SELECT * FROM ${this.#t.tenants} ORDER BY tenant_slug`)
    return rows.map(tenantFromRow)
  }

  /** Runs `work` in a transaction on one connection of the pool. */
  async #inTransaction<T>(work: (client: { query: Pool['query'] }) => Promise<T>): Promise<T> {
    const client = await this.pool.connect()
    try {
      await client.query('BEGIN')
      const result = await work(client)
      await client.query('COMMIT')
      return result
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {})
      throw error
    } finally {
      client.release()
    }
  }

  /** Writes events to the outbox with `client` (inside its transaction). */
  async #writeEvents(client: { query: Pool['query'] }, events: readonly OutboxEvent[]): Promise<void> {
    if (events.length === 0) return
    await client.query(
      `INSERT INTO ${this.#t.outbox} (event_id, tenant_id, type, data, occurred_at)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::bigint[])`,
      [
        events.map((event) => event.id),
        events.map((event) => event.tenantId),
        events.map((event) => event.type),
        events.map((event) => JSON.stringify(event.data)),
        events.map((event) => event.occurredAt.getTime()),
      ],
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
    await this.ready()
    await this.#writeEvents(this.pool, events)
  }

  async createKey(record: ApiKeyRecord, context?: KeyWriteContext): Promise<void> {
    const addressProblem = allowedAddressesProblem(record.allowedAddresses)
    if (addressProblem !== null) throw new SaikuInputError('allowedAddresses', `createKey: ${addressProblem}`)
    await this.ready()
    const insert = (client: { query: Pool['query'] }) =>
      client.query(
        `INSERT INTO ${this.#t.keys} (key_id, tenant_id, label, environment, secret_digest, permissions, created_at, expires_at, revoked_at, last_used_at, allowed_addresses)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
        [
          record.keyId,
          record.tenantId,
          record.label,
          record.environment,
          record.secretDigest,
          [...record.permissions],
          record.createdAt,
          record.expiresAt,
          record.revokedAt,
          record.lastUsedAt,
          addressesColumn(record.allowedAddresses),
        ],
      )
    if (!this.#outbox) {
      await insert(this.pool)
      return
    }
    await this.#inTransaction(async (client) => {
      await insert(client)
      await this.#writeEvents(client, [keyCreatedEvent(record, context)])
    })
  }

  /** An event about a key row the transaction just wrote. */
  #keyEvent(row: KeyRow, type: string, extra: Record<string, unknown>, at = new Date()): OutboxEvent {
    const record = keyFromRow(row)
    return {
      id: newEventId(),
      type,
      tenantId: record.tenantId,
      occurredAt: at,
      data: { ...keyEventData(record), ...extra },
    }
  }

  /** Changes a key in one round trip; the NOTIFY is delivered when the update commits, as for a revocation. */
  async updateKey(keyId: string, changes: KeyChanges): Promise<boolean> {
    const problem = keyChangesProblem(changes)
    if (problem !== null) throw new SaikuInputError('changes', `updateKey: ${problem}`)
    await this.ready()
    const run = this.#outbox
      ? this.#inTransaction.bind(this)
      : (work: (client: { query: Pool['query'] }) => Promise<boolean>) => work(this.pool)
    const updated = await run(async (client) => {
      const { rows } = await client.query<KeyRow>(
        `WITH updated AS (
         UPDATE ${this.#t.keys} SET
           label = CASE WHEN $2 THEN $3 ELSE label END,
           allowed_addresses = CASE WHEN $4 THEN $5::text[] ELSE allowed_addresses END,
           expires_at = CASE WHEN $6 THEN $7::timestamptz ELSE expires_at END
         WHERE key_id = $1 AND revoked_at IS NULL RETURNING *),
       notified AS (SELECT pg_notify($8, 'key:' || key_id) FROM updated)
       SELECT updated.* FROM updated, notified`,
        [
          keyId,
          changes.label !== undefined,
          changes.label ?? null,
          changes.allowedAddresses !== undefined,
          addressesColumn(changes.allowedAddresses),
          changes.expiresAt !== undefined,
          changes.expiresAt ?? null,
          this.channel,
        ],
      )
      if (rows[0] === undefined) return false
      if (this.#outbox)
        await this.#writeEvents(client, [this.#keyEvent(rows[0], 'key.updated', { changed: Object.keys(changes) })])
      return true
    })
    if (updated) announceKeyStoreChange(this, { kind: 'key', keyId })
    return updated
  }

  async listKeys(tenantId: string): Promise<ApiKeySummary[]> {
    await this.ready()
    // Read our own gathered uses first, so a list right after use shows it (a failed write is kept and reported).
    await this.flushKeyUses().catch(() => {})
    const { rows } = await this.pool.query<KeyRow>(
      `SELECT * FROM ${this.#t.keys} WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY created_at, key_id`,
      [tenantId],
    )
    return rows.map((row) => toKeySummary(keyFromRow(row)))
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
    await this.ready()
    // One statement; the NOTIFY is delivered when the update commits.
    const revokeWith = (client: { query: Pool['query'] }) =>
      client.query<KeyRow>(
        `WITH revoked AS (UPDATE ${this.#t.keys} SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL RETURNING *),
         notified AS (SELECT pg_notify($3, 'key:' || key_id) FROM revoked)
         SELECT revoked.* FROM revoked, notified`,
        [keyId, revokedAt, this.channel],
      )
    const revoked =
      !this.#outbox && events.length === 0
        ? (await revokeWith(this.pool)).rows.length > 0
        : await this.#inTransaction(async (client) => {
            const row = (await revokeWith(client)).rows[0]
            if (row === undefined) return false
            const own = this.#outbox
              ? [this.#keyEvent(row, 'key.revoked', { revokedAt: revokedAt.toISOString() }, revokedAt)]
              : []
            await this.#writeEvents(client, [...own, ...events])
            return true
          })
    if (revoked) announceKeyStoreChange(this, { kind: 'key', keyId })
    return revoked
  }

  /** Gathers the use; it is written with others at the next flush. */
  async recordKeyUse(keyId: string, usedAt: Date): Promise<void> {
    const known = this.#pendingUses.get(keyId)
    if (known === undefined || known < usedAt) this.#pendingUses.set(keyId, usedAt)
    this.#scheduleFlush()
  }

  #scheduleFlush(): void {
    if (this.#flushTimer !== undefined || this.#closed || this.#pendingUses.size === 0) return
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined
      // A failure is reported and its uses kept: the next flush writes them.
      this.flushKeyUses().catch(() => this.#scheduleFlush())
    }, this.#lastUsedFlushMs)
    this.#flushTimer.unref()
  }

  /**
   * Writes every gathered use in one statement and resolves with how many. When the
   * write fails, the uses are kept for the next flush, the failure goes to `onError`,
   * and this rejects.
   */
  async flushKeyUses(): Promise<number> {
    if (this.#pendingUses.size === 0) return 0
    const uses = this.#pendingUses
    this.#pendingUses = new Map()
    try {
      await this.ready()
      await this.pool.query(
        `UPDATE ${this.#t.keys} AS k SET last_used_at = u.used_at
         FROM (SELECT unnest($1::text[]) AS key_id, unnest($2::timestamptz[]) AS used_at) AS u
         WHERE k.key_id = u.key_id AND (k.last_used_at IS NULL OR k.last_used_at < u.used_at)`,
        [[...uses.keys()], [...uses.values()]],
      )
    } catch (error) {
      // Put them back, keeping the later time where one came in meanwhile.
      for (const [keyId, at] of uses) {
        const known = this.#pendingUses.get(keyId)
        if (known === undefined || known < at) this.#pendingUses.set(keyId, at)
      }
      const failure = error instanceof Error ? error : new Error(String(error))
      this.#onError(failure)
      throw failure
    }
    return uses.size
  }

  /**
   * Adds each bucket's counts to its row in one statement (an additive upsert): other processes' writes
   * add up. Rows are written in key order, so two batches over the same rows wait rather than deadlock.
   */
  async addUsage(buckets: readonly UsageBucket[]): Promise<void> {
    const problem = usageBucketsProblem(buckets)
    if (problem !== null) throw new SaikuInputError('buckets', `addUsage: ${problem}`)
    if (buckets.length === 0) return
    await this.ready()
    await this.pool.query(
      `INSERT INTO ${this.#t.usage} AS u (tenant_id, hour_start, key_id, admitted, rate_limited, quota_exceeded, forbidden, payment_required)
       SELECT tenant_id, hour_start, key_id, sum(admitted), sum(rate_limited), sum(quota_exceeded), sum(forbidden), sum(payment_required)
       FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
         AS b (tenant_id, hour_start, key_id, admitted, rate_limited, quota_exceeded, forbidden, payment_required)
       GROUP BY tenant_id, hour_start, key_id
       ORDER BY tenant_id, hour_start, key_id
       ON CONFLICT (tenant_id, hour_start, key_id) DO UPDATE SET admitted = u.admitted + excluded.admitted,
         rate_limited = u.rate_limited + excluded.rate_limited, quota_exceeded = u.quota_exceeded + excluded.quota_exceeded,
         forbidden = u.forbidden + excluded.forbidden, payment_required = u.payment_required + excluded.payment_required`,
      [
        buckets.map((b) => b.tenantId),
        buckets.map((b) => new Date(b.hourStartMs)),
        buckets.map((b) => b.keyId ?? ''),
        buckets.map((b) => b.admitted),
        buckets.map((b) => b.rateLimited),
        buckets.map((b) => b.quotaExceeded),
        buckets.map((b) => b.forbidden),
        buckets.map((b) => b.paymentRequired),
      ],
    )
  }

  async readUsage(query: UsageQuery): Promise<UsageBucket[]> {
    await this.ready()
    const { tenantId, fromMs, toMs, keyId } = query
    const { rows } = await this.pool.query<UsageRow>(
      `SELECT * FROM ${this.#t.usage} WHERE tenant_id = $1 AND hour_start >= $2 AND hour_start < $3
         AND ($4::text IS NULL OR key_id = $4) ORDER BY hour_start, key_id`,
      [tenantId, new Date(fromMs), new Date(toMs), keyId ?? null],
    )
    return rows.map(usageFromRow)
  }

  async pruneUsage(beforeMs: number): Promise<number> {
    await this.ready()
    const { rowCount } = await this.pool.query(`DELETE FROM ${this.#t.usage} WHERE hour_start < $1`, [
      new Date(beforeMs),
    ])
    return rowCount ?? 0
  }

  /** One conditional UPDATE over every subscription column (and the tier for a plan change): of concurrent changes made from the same reading, one wins. */
  async replaceSubscription(
    tenantId: string,
    expected: Subscription,
    next: Subscription,
    plan?: PlanChange,
  ): Promise<boolean> {
    const current = await this.findTenant(tenantId)
    if (current === null) return false
    if (plan !== undefined && current.tier !== plan.expectedTier) return false
    validateTenantRecord({ ...current, tier: plan?.tier ?? current.tier, subscription: next }, this.#tiers)
    const { rowCount } = await this.pool.query(
      `WITH written AS (
         UPDATE ${this.#t.tenants} SET subscription_status = $2, trial_ends_at = $3, billing_anchor = $4,
           scheduled_tier = $5, cancel_at_period_end = $6, scheduled_change_at = $7, tier = COALESCE($8::text, tier)
         WHERE tenant_id = $1 AND subscription_status = $9 AND trial_ends_at IS NOT DISTINCT FROM $10::timestamptz
           AND billing_anchor IS NOT DISTINCT FROM $11::timestamptz AND scheduled_tier IS NOT DISTINCT FROM $12::text
           AND cancel_at_period_end = $13 AND scheduled_change_at IS NOT DISTINCT FROM $14::timestamptz
           AND ($15::text IS NULL OR tier = $15::text)
         RETURNING tenant_id)
       SELECT pg_notify($16, 'tenant:' || tenant_id) FROM written`,
      [
        tenantId,
        next.status,
        next.trialEndsAt ?? null,
        ...billingValues(next),
        plan?.tier ?? null,
        expected.status,
        expected.trialEndsAt ?? null,
        ...billingValues(expected),
        plan?.expectedTier ?? null,
        this.channel,
      ],
    )
    const replaced = (rowCount ?? 0) > 0
    if (replaced) announceKeyStoreChange(this, { kind: 'tenant', tenantId })
    return replaced
  }

  async putTenant(tenant: TenantRecord): Promise<void> {
    validateTenantRecord(tenant, this.#tiers)
    await this.ready()
    await this.pool.query(
      `WITH written AS (
         INSERT INTO ${this.#t.tenants} (tenant_id, tenant_slug, tier, connection_name, subscription_status, trial_ends_at, limit_per_minute, limit_per_hour,
           billing_anchor, scheduled_tier, cancel_at_period_end, scheduled_change_at, limit_per_day, limit_per_month)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $12, $13, $14, $15, $9, $10)
         ON CONFLICT (tenant_id) DO UPDATE SET tenant_slug = excluded.tenant_slug, tier = excluded.tier,
           connection_name = excluded.connection_name, subscription_status = excluded.subscription_status,
           trial_ends_at = excluded.trial_ends_at, limit_per_minute = excluded.limit_per_minute, limit_per_hour = excluded.limit_per_hour,
           billing_anchor = excluded.billing_anchor, scheduled_tier = excluded.scheduled_tier,
           cancel_at_period_end = excluded.cancel_at_period_end, scheduled_change_at = excluded.scheduled_change_at,
           limit_per_day = excluded.limit_per_day, limit_per_month = excluded.limit_per_month
         RETURNING tenant_id)
       SELECT pg_notify($11, 'tenant:' || tenant_id) FROM written`,
      [
        tenant.tenantId,
        tenant.tenantSlug,
        tenant.tier,
        tenant.connectionName,
        tenant.subscription.status,
        tenant.subscription.trialEndsAt ?? null,
        tenant.limits?.perMinute ?? null,
        tenant.limits?.perHour ?? null,
        tenant.limits?.perDay ?? null,
        tenant.limits?.perMonth ?? null,
        this.channel,
        ...billingValues(tenant.subscription),
      ],
    )
    announceKeyStoreChange(this, { kind: 'tenant', tenantId: tenant.tenantId })
  }

  /**
   * Writes the gathered uses and closes the LISTEN connection (or stops reconnecting), each
   * within `listenTimeoutMs`. The pool stays yours to end.
   */
  async close(): Promise<void> {
    this.#closed = true
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat)
    this.#heartbeat = undefined
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer)
    this.#retryTimer = undefined
    if (this.#flushTimer !== undefined) clearTimeout(this.#flushTimer)
    this.#flushTimer = undefined
    if (this.#attempt !== undefined) this.#destroy(this.#attempt)
    const listener = this.#listener
    this.#listener = undefined
    await this.flushKeyUses().catch(() => {}) // reported to onError
    if (listener !== undefined && !listener.destroyed) {
      // Ending the session ends its LISTEN; a peer that does not answer is not waited on.
      await withDeadline(listener.client.end(), this.#listenTimeoutMs, 'closing the LISTEN connection').catch(() => {})
      this.#destroy(listener)
    }
  }
}
