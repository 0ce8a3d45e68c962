import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { afterAll, beforeAll, describe } from 'vitest'
import { postgresUrl } from '@saiku/test-support/services'
import { describeMyKeyStore } from './key-store-conformance.js'
import { migrate } from './my-key-store.js'

// The README's own key store, run as its conformance snippet runs it, in a schema of its own.
describe.skipIf(postgresUrl === undefined)("the README's own key store on PostgreSQL", () => {
  const schema = `readme_store_${randomUUID().replaceAll('-', '').slice(0, 16)}`
  const pool = new pg.Pool({ connectionString: postgresUrl, max: 4, options: `-c search_path=${schema}` })
  beforeAll(async () => {
    await pool.query(`CREATE SCHEMA "${schema}"`)
    await migrate(pool)
  })
  afterAll(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await pool.end()
  })

  describeMyKeyStore(pool)
})
