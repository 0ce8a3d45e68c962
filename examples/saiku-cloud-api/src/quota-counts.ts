import cluster from 'node:cluster'
import { DEFAULT_TIERS, type MemoryLimiterBackend, type QuotaCountRow, type TenantAdminStore } from '@saiku/core'
import { PostgresKeyStore } from '@saiku/postgres'
import { SqliteKeyStore } from '@saiku/sqlite'
import { ConfigError } from './config.js'

// Without Redis the day and month counts live in this process's memory limiter. They are written to the
// key store's own database in batches (as last-used times are) and loaded at the next start, so a restart
// does not give a tenant its month back. The table stands alone beside the key store's and the dashboard's
// (created if missing), written only here.

/** How often the changed counts are written, as last-used times are: what a crash can lose at most. */
export const DEFAULT_QUOTA_FLUSH_MS = 10_000

/** The saved counts in one database: the rows of windows not ended, and an upsert that never lowers a count. */
interface QuotaTable {
  load(nowMs: number): Promise<QuotaCountRow[]>
  /** Upserts the rows keeping the larger count for a window, and deletes the rows of windows ended by `nowMs`. */
  save(rows: readonly QuotaCountRow[], nowMs: number): Promise<void>
}

export interface QuotaCountSaver {
  /** Writes the counts changed since the last write now; resolves with how many rows. */
  flush(): Promise<number>
  /** Stops the timer (call `flush` first to keep the last counts). */
  stop(): void
}

/** QUOTA_FLUSH_MS: how often the counts are written; default 10 s, as last-used times. */
export function readQuotaFlushMs(value: string | undefined): number {
  if (value === undefined || value === '') return DEFAULT_QUOTA_FLUSH_MS
  const ms = Number(value)
  if (!/^\d{1,9}$/.test(value) || ms < 100)
    throw new ConfigError(
      `QUOTA_FLUSH_MS: expected a whole number of milliseconds from 100, got ${JSON.stringify(value)}`,
    )
  return ms
}

/**
 * TIER_QUOTAS: day and month quotas for the built-in tiers, as a comma-separated list of
 * `TIER.perDay=N` and `TIER.perMonth=N` (e.g. `starter.perMonth=100000,team.perDay=50000`),
 * over the tier's own minute and hour. Empty or unset: the tiers as the spec has them.
 * The authenticator checks the numbers (each at least the window before it) at start-up.
 */
export function readTierQuotas(
  value: string | undefined,
): Record<string, { perMinute: number; perHour: number; perDay?: number; perMonth?: number }> | undefined {
  if (value === undefined || value.trim() === '') return undefined
  const tiers: Record<string, { perMinute: number; perHour: number; perDay?: number; perMonth?: number }> = {}
  for (const entry of value.split(',').map((part) => part.trim())) {
    const match = /^([\w-]{1,64})\.(perDay|perMonth)=(\d{1,15})$/.exec(entry)
    if (match === null)
      throw new ConfigError(
        `TIER_QUOTAS: expected a list of TIER.perDay=N and TIER.perMonth=N, got ${JSON.stringify(entry.slice(0, 200))}`,
      )
    const [, name, window, count] = match as unknown as [string, string, 'perDay' | 'perMonth', string]
    const base = Object.hasOwn(DEFAULT_TIERS, name) ? DEFAULT_TIERS[name] : undefined
    if (base === undefined || base === 'custom') {
      const named = Object.keys(DEFAULT_TIERS).filter((tier) => DEFAULT_TIERS[tier] !== 'custom')
      throw new ConfigError(`TIER_QUOTAS: no tier "${name}" with limits of its own; the tiers are ${named.join(', ')}`)
    }
    tiers[name] ??= { perMinute: base.perMinute, perHour: base.perHour }
    tiers[name][window] = Number(count)
  }
  return tiers
}

/** Whether this process is one of several (a cluster worker, or one of a process manager's instances). */
export function oneOfSeveralProcesses(): boolean {
  return cluster.isWorker || process.env.NODE_APP_INSTANCE !== undefined
}

/**
 * Loads the saved counts of windows not ended into `limiter` (call it before the server takes requests),
 * then writes the changed ones every `flushMs`. A failed write is reported and its rows kept for the next.
 */
export async function keepQuotaCounts(
  store: TenantAdminStore,
  limiter: MemoryLimiterBackend,
  options: { readonly flushMs: number; readonly onError: (error: Error) => void; readonly now?: () => number },
): Promise<{ saver: QuotaCountSaver; loaded: number }> {
  const now = options.now ?? Date.now
  const table = await quotaTable(store)
  const loaded = limiter.restoreQuotaCounts(await table.load(now()))
  // Rows read from the limiter but not written yet (a write failed, or one is under way): the larger count wins.
  const pending = new Map<string, QuotaCountRow>()
  let writing: Promise<number> = Promise.resolve(0)

  const write = async (): Promise<number> => {
    for (const row of limiter.quotaCounts()) {
      const id = `${row.window}\u0000${row.startMs}\u0000${row.tenantKey}`
      const before = pending.get(id)
      if (before === undefined || before.count < row.count) pending.set(id, row)
    }
    const nowMs = now()
    for (const [id, row] of pending) if (row.endMs <= nowMs) pending.delete(id)
    const rows = [...pending.values()]
    pending.clear()
    try {
      await table.save(rows, nowMs)
    } catch (error) {
      for (const row of rows) {
        const id = `${row.window}\u0000${row.startMs}\u0000${row.tenantKey}`
        const later = pending.get(id)
        if (later === undefined || later.count < row.count) pending.set(id, row)
      }
      throw error
    }
    return rows.length
  }
  // One write at a time: a slow database never has two batches racing each other.
  const flush = (): Promise<number> => (writing = writing.catch(() => 0).then(write))

  const timer = setInterval(() => {
    flush().catch((error: unknown) => options.onError(error instanceof Error ? error : new Error(String(error))))
  }, options.flushMs)
  timer.unref()
  return { saver: { flush, stop: () => clearInterval(timer) }, loaded }
}

/** The saved counts of the days and months not ended: what `pnpm saiku usage` reads without Redis. */
export async function loadQuotaCounts(store: TenantAdminStore, nowMs = Date.now()): Promise<QuotaCountRow[]> {
  return (await quotaTable(store)).load(nowMs)
}

async function quotaTable(store: TenantAdminStore): Promise<QuotaTable> {
  if (store instanceof SqliteKeyStore) return sqliteQuotaTable(store.db)
  if (store instanceof PostgresKeyStore) return postgresQuotaTable(store)
  throw new ConfigError('the quota counts are kept in SQLite or PostgreSQL; this store is neither')
}

interface SavedRow {
  tenant_key: string
  quota_window: 'day' | 'month'
  start_ms: number | string
  end_ms: number | string
  count: number | string
}

const fromSaved = (row: SavedRow): QuotaCountRow => ({
  tenantKey: row.tenant_key,
  window: row.quota_window,
  startMs: Number(row.start_ms),
  endMs: Number(row.end_ms),
  count: Number(row.count),
})

function sqliteQuotaTable(db: SqliteKeyStore['db']): QuotaTable {
  db.exec(`CREATE TABLE IF NOT EXISTS saiku_quota_counts (
    tenant_key TEXT NOT NULL,
    quota_window TEXT NOT NULL CHECK (quota_window IN ('day', 'month')),
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    count INTEGER NOT NULL CHECK (count >= 0),
    PRIMARY KEY (tenant_key, quota_window, start_ms)
  )`)
  const select = db.prepare<[number], SavedRow>(
    'SELECT tenant_key, quota_window, start_ms, end_ms, count FROM saiku_quota_counts WHERE end_ms > ?',
  )
  const upsert = db.prepare(
    `INSERT INTO saiku_quota_counts (tenant_key, quota_window, start_ms, end_ms, count)
     VALUES (@tenantKey, @window, @startMs, @endMs, @count)
     ON CONFLICT (tenant_key, quota_window, start_ms) DO UPDATE SET count = max(count, excluded.count)`,
  )
  const prune = db.prepare('DELETE FROM saiku_quota_counts WHERE end_ms <= ?')
  const saveAll = db.transaction((rows: readonly QuotaCountRow[], nowMs: number) => {
    for (const row of rows) upsert.run(row)
    prune.run(nowMs)
  })
  return {
    load: async (nowMs) => select.all(nowMs).map(fromSaved),
    save: async (rows, nowMs) => {
      saveAll.immediate(rows, nowMs)
    },
  }
}

async function postgresQuotaTable(store: PostgresKeyStore): Promise<QuotaTable> {
  const { pool } = store
  const table = `"${store.schema}".saiku_quota_counts`
  await store.ready()
  const client = await pool.connect()
  try {
    // Two processes starting together: one creates the table, the other waits for it.
    await client.query('BEGIN')
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`saiku_quota_counts_${store.schema}`])
    await client.query(`CREATE TABLE IF NOT EXISTS ${table} (
      tenant_key text NOT NULL,
      quota_window text NOT NULL CHECK (quota_window IN ('day', 'month')),
      start_ms bigint NOT NULL,
      end_ms bigint NOT NULL,
      count bigint NOT NULL CHECK (count >= 0),
      PRIMARY KEY (tenant_key, quota_window, start_ms)
    )`)
    await client.query('COMMIT')
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {})
    throw error
  } finally {
    client.release()
  }
  return {
    load: async (nowMs) => {
      const { rows } = await pool.query<SavedRow>(
        `SELECT tenant_key, quota_window, start_ms, end_ms, count FROM ${table} WHERE end_ms > $1`,
        [nowMs],
      )
      return rows.map(fromSaved)
    },
    save: async (rows, nowMs) => {
      // One statement for the batch, then the ended windows; a failure writes none of it.
      const client = await pool.connect()
      try {
        await client.query('BEGIN')
        if (rows.length > 0)
          await client.query(
            `INSERT INTO ${table} AS saved (tenant_key, quota_window, start_ms, end_ms, count)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
             ON CONFLICT (tenant_key, quota_window, start_ms) DO UPDATE SET count = GREATEST(saved.count, excluded.count)`,
            [
              rows.map((row) => row.tenantKey),
              rows.map((row) => row.window),
              rows.map((row) => row.startMs),
              rows.map((row) => row.endMs),
              rows.map((row) => row.count),
            ],
          )
        await client.query(`DELETE FROM ${table} WHERE end_ms <= $1`, [nowMs])
        await client.query('COMMIT')
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {})
        throw error
      } finally {
        client.release()
      }
    },
  }
}
