import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import type { TenantAdminStore } from '@saiku/core'
import { SqliteKeyStore } from '@saiku/sqlite'
import { ConfigError } from './config.js'

export interface OpenedStore {
  readonly store: TenantAdminStore
  readonly description: string
  close(): Promise<void>
}

/** Opens the store `DATABASE_URL` names; the server and the CLI share this. */
export async function openStore(databaseUrl: string, options: { watchChanges?: boolean } = {}): Promise<OpenedStore> {
  // A long-running server watches for revocations made elsewhere; a one-shot CLI does not.
  const watchChanges = options.watchChanges ?? true
  if (databaseUrl.startsWith('sqlite:')) {
    const path = databaseUrl.slice('sqlite:'.length)
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true })
    const store = new SqliteKeyStore(path, { watchIntervalMs: watchChanges ? 1_000 : 0 })
    return { store, description: `SQLite ${path}`, close: async () => store.close() }
  }
  throw new ConfigError('DATABASE_URL: postgres:// needs the PostgreSQL store, which this build does not include yet')
}
