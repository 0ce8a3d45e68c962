import type { PostgresKeyStore } from '@saiku/postgres'
import type { SqliteKeyStore } from '@saiku/sqlite'

// The reference server's own tables (the dashboard's, the webhooks') live beside the key store's, each set with its
// version table and list of steps. Both runners apply the steps not yet applied and record the new version in one
// transaction, so a failed step leaves the version where it was.

/** Brings a SQLite file's tables to the newest version, in one immediate transaction. */
export function migrateSqliteSteps(db: SqliteKeyStore['db'], versionTable: string, steps: readonly string[]): void {
  db.exec(`CREATE TABLE IF NOT EXISTS ${versionTable} (version INTEGER NOT NULL)`)
  db.transaction(() => {
    const row = db.prepare<[], { version: number }>(`SELECT version FROM ${versionTable}`).get()
    for (let version = row?.version ?? 0; version < steps.length; version++) db.exec(steps[version]!)
    if (row === undefined) db.prepare(`INSERT INTO ${versionTable} (version) VALUES (?)`).run(steps.length)
    else db.prepare(`UPDATE ${versionTable} SET version = ?`).run(steps.length)
  }).immediate()
}

/**
 * Brings a PostgreSQL schema's tables to the newest version, in one transaction under an advisory lock named
 * `lockName`, so that two processes starting together do not both migrate.
 */
export async function migratePostgresSteps(
  keyStore: PostgresKeyStore,
  versionTable: string,
  lockName: string,
  steps: readonly ((schema: string) => string)[],
): Promise<void> {
  const s = `"${keyStore.schema}"`
  const client = await keyStore.pool.connect()
  try {
    await client.query('BEGIN')
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockName])
    await client.query(`CREATE TABLE IF NOT EXISTS ${s}.${versionTable} (version integer NOT NULL)`)
    const { rows } = await client.query<{ version: number }>(`SELECT version FROM ${s}.${versionTable}`)
    for (let version = rows[0]?.version ?? 0; version < steps.length; version++) await client.query(steps[version]!(s))
    if (rows.length === 0) await client.query(`INSERT INTO ${s}.${versionTable} (version) VALUES ($1)`, [steps.length])
    else await client.query(`UPDATE ${s}.${versionTable} SET version = $1`, [steps.length])
    await client.query('COMMIT')
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {})
    throw error
  } finally {
    client.release()
  }
}
