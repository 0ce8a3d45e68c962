import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import pg from 'pg'
import type { TenantAdminStore } from '@saiku/core'
import { PostgresKeyStore } from '@saiku/postgres'
import { SqliteKeyStore } from '@saiku/sqlite'
import { ConfigError } from './config.js'

export interface OpenedStore {
  readonly store: TenantAdminStore
  readonly description: string
  /** Writes the batched last-used times now; resolves with how many. */
  flushKeyUses(): Promise<number>
  close(): Promise<void>
}

const NOT_WRITABLE = /^(SQLITE_READONLY|SQLITE_CANTOPEN|SQLITE_PERM|SQLITE_AUTH|EACCES|EROFS|EPERM)/

/** A SQLite file (or folder) this process cannot write: one line saying what to do, not a stack trace. */
function cannotWrite(path: string, error: unknown): unknown {
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code !== 'string' || !NOT_WRITABLE.test(code)) return error
  return new ConfigError(
    `DATABASE_URL: cannot write the SQLite file ${path} (${code}). The server writes the file and its folder: make both writable by this user, or point DATABASE_URL at a writable place.`,
  )
}

/**
 * Opens the store `DATABASE_URL` names; the server and the CLI share this.
 * `postgres://…?schema=NAME` puts the tables in that schema (default public).
 */
export async function openStore(
  databaseUrl: string,
  options: { watchChanges?: boolean; onError?: (error: Error) => void } = {},
): Promise<OpenedStore> {
  // A long-running server watches for revocations made elsewhere; a one-shot CLI does not.
  const watchChanges = options.watchChanges ?? true
  if (databaseUrl.startsWith('sqlite:')) {
    const path = databaseUrl.slice('sqlite:'.length)
    let store: SqliteKeyStore
    try {
      if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true })
      store = new SqliteKeyStore(path, {
        watchIntervalMs: watchChanges ? 1_000 : 0,
        // Key writes queue their webhook events in their own transaction, from the server and the CLI alike.
        outbox: true,
        ...(options.onError === undefined ? {} : { onError: options.onError }),
      })
    } catch (error) {
      throw cannotWrite(path, error)
    }
    return {
      store,
      description: `SQLite ${path}`,
      flushKeyUses: () => store.flushKeyUses(),
      close: async () => store.close(),
    }
  }
  const url = new URL(databaseUrl)
  const schema = url.searchParams.get('schema') ?? 'public'
  url.searchParams.delete('schema')
  const pool = new pg.Pool({ connectionString: url.toString(), max: 10, connectionTimeoutMillis: 5_000 })
  pool.on('error', () => {}) // an idle connection dropped: the next query reconnects
  const store = new PostgresKeyStore({
    pool,
    schema,
    listen: watchChanges,
    outbox: true,
    ...(options.onError === undefined ? {} : { onError: options.onError }),
  })
  try {
    await store.ready()
  } catch (error) {
    await pool.end()
    throw error
  }
  return {
    store,
    description: `PostgreSQL ${url.host}${url.pathname} (schema ${schema})`,
    flushKeyUses: () => store.flushKeyUses(),
    close: async () => {
      await store.close()
      await pool.end()
    },
  }
}
