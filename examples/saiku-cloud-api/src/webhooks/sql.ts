import type { TenantAdminStore } from '@saiku/core'
import { PostgresKeyStore } from '@saiku/postgres'
import { SqliteKeyStore } from '@saiku/sqlite'
import { migratePostgresSteps, migrateSqliteSteps } from '../migrate.js'

// The webhook tables live beside the keys, in the key store's SQLite file or PostgreSQL schema, with a schema
// version of their own. Their queries are written once, in the SQL both databases share: `$1`-style parameters
// (SQLite's are rewritten to `?`), times as milliseconds in integer columns, ON CONFLICT, UPDATE … RETURNING.

/** One statement of a transaction; `ifChanged` runs it only when the one before it changed a row. */
export interface Step {
  readonly text: string
  readonly values: readonly unknown[]
  readonly ifChanged?: boolean
}

export interface WebhookSql {
  readonly dialect: 'sqlite' | 'postgres'
  /** A table's name, schema-qualified on PostgreSQL. */
  table(name: string): string
  /** Rows of one statement (a SELECT, or a write with RETURNING). */
  all<R>(text: string, values: readonly unknown[]): Promise<R[]>
  /** Rows changed by one statement. */
  run(text: string, values: readonly unknown[]): Promise<number>
  /** Statements in one transaction, in order; resolves with each one's changed rows (0 for one skipped). */
  batch(steps: readonly Step[]): Promise<number[]>
}

const SQLITE_TABLES = `
  CREATE TABLE saiku_webhook_endpoints (
    endpoint_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    url TEXT NOT NULL,
    description TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_secret_until INTEGER,
    state TEXT NOT NULL CHECK (state IN ('active', 'failing', 'disabled')),
    state_reason TEXT,
    outbox_from INTEGER NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE INDEX saiku_webhook_endpoints_by_tenant ON saiku_webhook_endpoints (tenant_id, created_at);
  CREATE TABLE saiku_webhook_deliveries (
    delivery_id TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL REFERENCES saiku_webhook_endpoints (endpoint_id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    data TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    retry_base INTEGER NOT NULL DEFAULT 0,
    first_attempt_at INTEGER,
    next_attempt_at INTEGER,
    lease_until INTEGER,
    last_status INTEGER,
    UNIQUE (endpoint_id, event_id)
  );
  CREATE INDEX saiku_webhook_deliveries_due ON saiku_webhook_deliveries (state, next_attempt_at);
  CREATE INDEX saiku_webhook_deliveries_by_endpoint ON saiku_webhook_deliveries (endpoint_id, created_at);
  CREATE TABLE saiku_webhook_attempts (
    attempt_id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL REFERENCES saiku_webhook_deliveries (delivery_id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    attempted_at INTEGER NOT NULL,
    status INTEGER,
    duration_ms INTEGER NOT NULL,
    error TEXT,
    UNIQUE (delivery_id, attempt)
  );
  CREATE TABLE saiku_webhook_fired (
    fire_key TEXT PRIMARY KEY,
    fired_at INTEGER NOT NULL
  );`

/** The same tables on PostgreSQL: times in bigint milliseconds, as on SQLite, so that one set of queries serves both. */
const postgresTables = (s: string) => `
  CREATE TABLE ${s}.saiku_webhook_endpoints (
    endpoint_id text PRIMARY KEY,
    tenant_id text NOT NULL,
    url text NOT NULL,
    description text NOT NULL,
    events text NOT NULL,
    secret text NOT NULL,
    previous_secret text,
    previous_secret_until bigint,
    state text NOT NULL CHECK (state IN ('active', 'failing', 'disabled')),
    state_reason text,
    outbox_from bigint NOT NULL,
    created_at bigint NOT NULL
  );
  CREATE INDEX saiku_webhook_endpoints_by_tenant ON ${s}.saiku_webhook_endpoints (tenant_id, created_at);
  CREATE TABLE ${s}.saiku_webhook_deliveries (
    delivery_id text PRIMARY KEY,
    endpoint_id text NOT NULL REFERENCES ${s}.saiku_webhook_endpoints (endpoint_id) ON DELETE CASCADE,
    tenant_id text NOT NULL,
    event_id text NOT NULL,
    event_type text NOT NULL,
    data text NOT NULL,
    occurred_at bigint NOT NULL,
    created_at bigint NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    retry_base integer NOT NULL DEFAULT 0,
    first_attempt_at bigint,
    next_attempt_at bigint,
    lease_until bigint,
    last_status integer,
    UNIQUE (endpoint_id, event_id)
  );
  CREATE INDEX saiku_webhook_deliveries_due ON ${s}.saiku_webhook_deliveries (state, next_attempt_at);
  CREATE INDEX saiku_webhook_deliveries_by_endpoint ON ${s}.saiku_webhook_deliveries (endpoint_id, created_at);
  CREATE TABLE ${s}.saiku_webhook_attempts (
    attempt_id bigserial PRIMARY KEY,
    delivery_id text NOT NULL REFERENCES ${s}.saiku_webhook_deliveries (delivery_id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    attempted_at bigint NOT NULL,
    status integer,
    duration_ms integer NOT NULL,
    error text,
    UNIQUE (delivery_id, attempt)
  );
  CREATE TABLE ${s}.saiku_webhook_fired (
    fire_key text PRIMARY KEY,
    fired_at bigint NOT NULL
  );`

/** Migrations, one step per version, never edited once released. */
export const SQLITE_WEBHOOK_MIGRATIONS: readonly string[] = Object.freeze([SQLITE_TABLES])
export const POSTGRES_WEBHOOK_MIGRATIONS: readonly ((schema: string) => string)[] = Object.freeze([postgresTables])

const isLockError = (error: unknown): boolean => {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^SQLITE_(BUSY|LOCKED)/.test(code)
}
const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** `$1`, `$2` … as SQLite's `?`, with the values in the order the placeholders appear (one may repeat). */
function sqliteStatement(text: string, values: readonly unknown[]): { text: string; values: unknown[] } {
  const ordered: unknown[] = []
  const rewritten = text.replace(/\$(\d+)/g, (_, n: string) => {
    ordered.push(toSqlite(values[Number(n) - 1]))
    return '?'
  })
  return { text: rewritten, values: ordered }
}
const toSqlite = (value: unknown): unknown => (typeof value === 'boolean' ? (value ? 1 : 0) : value)

// Integer columns that PostgreSQL's bigint gives back as strings.
const NUMERIC = /(_at|_until|_ms|^attempts?|^status|^last_status)$/

/** A row with its bigint columns as numbers, as SQLite gives them. */
function numericRow<R>(row: Record<string, unknown>): R {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(row))
    out[key] = typeof value === 'string' && NUMERIC.test(key) && /^-?\d+$/.test(value) ? Number(value) : value
  return out as R
}

/** The webhook tables of a SQLite file; statements that meet another connection's lock are tried again. */
export function sqliteWebhookSql(store: SqliteKeyStore, busyTimeoutMs = 5_000): WebhookSql {
  const db = store.db
  migrateSqliteSteps(db, 'saiku_webhooks_schema_version', SQLITE_WEBHOOK_MIGRATIONS)
  // The key store turns busy_timeout off so that nothing blocks the event loop: a lock is waited for here, in pauses.
  async function retrying<T>(work: () => T): Promise<T> {
    const deadline = Date.now() + busyTimeoutMs
    for (let delayMs = 2; ; delayMs = Math.min(delayMs * 2, 100)) {
      try {
        return work()
      } catch (error) {
        if (!isLockError(error) || Date.now() >= deadline) throw error
        await pause(delayMs * (0.5 + Math.random()))
      }
    }
  }
  return {
    dialect: 'sqlite',
    table: (name) => name,
    all: <R>(text: string, values: readonly unknown[]) =>
      retrying(() => {
        const statement = sqliteStatement(text, values)
        return db.prepare(statement.text).all(...statement.values) as R[]
      }),
    run: (text, values) =>
      retrying(() => {
        const statement = sqliteStatement(text, values)
        return db.prepare(statement.text).run(...statement.values).changes
      }),
    batch: (steps) =>
      retrying(() =>
        db
          .transaction(() => {
            const changed: number[] = []
            for (const step of steps) {
              if (step.ifChanged === true && (changed.at(-1) ?? 0) === 0) {
                changed.push(0)
                continue
              }
              const statement = sqliteStatement(step.text, step.values)
              changed.push(db.prepare(statement.text).run(...statement.values).changes)
            }
            return changed
          })
          .immediate(),
      ),
  }
}

/** The webhook tables in a PostgreSQL store's schema, migrated on first use under an advisory lock. */
export function postgresWebhookSql(store: PostgresKeyStore): WebhookSql {
  const { pool } = store
  const s = `"${store.schema}"`
  let migrated: Promise<void> | undefined
  const ready = (): Promise<void> =>
    (migrated ??= (async () => {
      await store.ready()
      await migratePostgresSteps(
        store,
        'saiku_webhooks_schema_version',
        `saiku_webhooks_migrate_${store.schema}`,
        POSTGRES_WEBHOOK_MIGRATIONS,
      )
    })().catch((error: unknown) => {
      migrated = undefined
      throw error
    }))
  return {
    dialect: 'postgres',
    table: (name) => `${s}.${name}`,
    async all<R>(text: string, values: readonly unknown[]) {
      await ready()
      const { rows } = await pool.query(text, [...values])
      return rows.map((row) => numericRow<R>(row as Record<string, unknown>))
    },
    async run(text, values) {
      await ready()
      return (await pool.query(text, [...values])).rowCount ?? 0
    },
    async batch(steps) {
      await ready()
      const client = await pool.connect()
      try {
        await client.query('BEGIN')
        const changed: number[] = []
        for (const step of steps) {
          if (step.ifChanged === true && (changed.at(-1) ?? 0) === 0) {
            changed.push(0)
            continue
          }
          changed.push((await client.query(step.text, [...step.values])).rowCount ?? 0)
        }
        await client.query('COMMIT')
        return changed
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {})
        throw error
      } finally {
        client.release()
      }
    },
  }
}

/** The webhook tables in the key store's own database. */
export async function openWebhookSql(store: TenantAdminStore): Promise<WebhookSql> {
  if (store instanceof SqliteKeyStore) return sqliteWebhookSql(store)
  if (store instanceof PostgresKeyStore) {
    const sql = postgresWebhookSql(store)
    await sql.all(`SELECT 1 FROM ${sql.table('saiku_webhook_fired')} LIMIT 1`, []) // migrates now: a broken database fails at start-up
    return sql
  }
  throw new Error('Webhooks need the SQLite or PostgreSQL key store.')
}
