import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SqliteKeyStore } from '@saiku/sqlite'
import { postgresUrl } from './services.js'
import {
  cliJson,
  processTimeout,
  startServer,
  tempDatabase,
  waitFor,
  type RunningServer,
  type TempDir,
} from './helpers.js'

// Without Redis the day and month counts are kept in the server's database: a graceful restart
// finds them exact, a crash loses at most the requests admitted since the last batch.

const QUOTAS = 'starter.perDay=2000,starter.perMonth=5000'

interface Usage {
  day: { used: number; quota: number }
  month: { used: number; quota: number }
}

async function usage(server: RunningServer, key: string): Promise<Usage> {
  const res = await fetch(`${server.url}/me/usage`, { headers: { authorization: `Bearer ${key}` } })
  const body = (await res.json()) as Usage
  expect(res.status, JSON.stringify(body)).toBe(200)
  return body
}

/** `n` requests, each admitted and counted once. */
async function spend(server: RunningServer, key: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${server.url}/me/tenant`, { headers: { authorization: `Bearer ${key}` } })
    await res.arrayBuffer()
    expect(res.status).toBe(200)
  }
}

const setups = [
  { name: 'SQLite', postgres: false, skip: false },
  { name: 'PostgreSQL', postgres: true, skip: postgresUrl === undefined },
]

for (const setup of setups) {
  describe.skipIf(setup.skip)(`the day and month counts across a restart without Redis (${setup.name})`, () => {
    const schema = `quota_restart_${randomUUID().replaceAll('-', '').slice(0, 12)}`
    let db: TempDir
    let env: Record<string, string>
    beforeAll(() => {
      db = tempDatabase()
      const url = new URL(postgresUrl ?? 'postgres://unused')
      url.searchParams.set('schema', schema)
      env = {
        DATABASE_URL: setup.postgres ? url.toString() : db.databaseUrl,
        REDIS_URL: '',
        SAIKU_DATA_DIR: db.path,
        TIER_QUOTAS: QUOTAS,
        QUOTA_FLUSH_MS: '60000',
      }
    })
    afterAll(async () => {
      db.remove()
      if (setup.postgres && postgresUrl !== undefined) {
        const pool = new pg.Pool({ connectionString: postgresUrl })
        await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
        await pool.end()
      }
    })

    it(
      'a graceful stop writes the last counts: the next start finds them exact',
      async () => {
        let server = await startServer(env)
        const key = server.demoKey!
        expect(key).toBeDefined()
        try {
          await spend(server, key, 7)
          const before = await usage(server, key)
          expect(before.month).toMatchObject({ used: 7, quota: 5000 })
          expect(before.day).toMatchObject({ used: 7, quota: 2000 })
          // No batch within the run (60 s): only the shutdown's write can keep them.
          await server.stop()
          expect(await server.exited).toEqual({ code: 0, signal: null })
          const stopped = server.logs.find((line) => line.msg === 'stopped')
          server = await startServer(env)
          const after = await usage(server, key)
          expect(after.month.used).toBe(7)
          expect(after.day.used).toBe(7)
          expect(stopped).toMatchObject({ savedQuotaCounts: 2 })
          expect(server.logs.find((line) => line.msg === 'listening')).toMatchObject({ quotaCountsLoaded: 2 })
          await spend(server, key, 2)
          expect((await usage(server, key)).month.used).toBe(9)
          // A second graceful restart writes over the same row, never adding it twice.
          await server.stop()
          // The CLI reads the day and month as the server saved them.
          const read = await cliJson<Usage>(['usage', '--tenant', 'acme'], env)
          expect([read.day.used, read.month.used]).toEqual([9, 9])
          server = await startServer(env)
          expect((await usage(server, key)).month.used).toBe(9)
        } finally {
          await server.stop()
        }
      },
      processTimeout(3, 30_000),
    )
  })
}

describe('a crash without Redis (SQLite)', () => {
  let db: TempDir
  beforeAll(() => {
    db = tempDatabase()
  })
  afterAll(() => db.remove())

  it(
    'loses at most the requests admitted since the last batch',
    async () => {
      const env = {
        DATABASE_URL: db.databaseUrl,
        REDIS_URL: '',
        SAIKU_DATA_DIR: db.path,
        TIER_QUOTAS: QUOTAS,
        QUOTA_FLUSH_MS: '300',
      }
      let server = await startServer(env)
      const key = server.demoKey!
      const file = new SqliteKeyStore(db.databaseUrl.slice('sqlite:'.length), { watchIntervalMs: 0 })
      const saved = (): number =>
        file.db
          .prepare<[], { count: number }>("SELECT count FROM saiku_quota_counts WHERE quota_window = 'month'")
          .get()?.count ?? 0
      try {
        await spend(server, key, 6)
        await waitFor(() => saved() === 6, 10_000)
        await spend(server, key, 3)
        process.kill(-server.pid, 'SIGKILL')
        expect(await server.exited).toEqual({ code: null, signal: 'SIGKILL' })
        const written = saved()
        expect(written).toBeGreaterThanOrEqual(6)
        expect(written).toBeLessThanOrEqual(9)
        server = await startServer(env)
        // What the last batch wrote, never less: the 3 after it are the most a crash can lose.
        expect((await usage(server, key)).month.used).toBe(written)
      } finally {
        file.close()
        await server.stop()
      }
    },
    processTimeout(2, 30_000),
  )
})

describe('several processes without Redis', () => {
  let db: TempDir
  beforeAll(() => {
    db = tempDatabase()
  })
  afterAll(() => db.remove())

  it(
    'a process manager instance warns at start-up that limits and quotas are counted per process',
    async () => {
      const server = await startServer({
        DATABASE_URL: db.databaseUrl,
        REDIS_URL: '',
        SAIKU_DATA_DIR: db.path,
        NODE_APP_INSTANCE: '0',
      })
      try {
        expect(server.logs.filter((line) => line.msg === 'limits counted per process')).toEqual([
          expect.objectContaining({ level: 40, detail: expect.stringContaining('day and month') }),
        ])
        const warned = server.logs.findIndex((line) => line.msg === 'limits counted per process')
        expect(warned).toBeLessThan(server.logs.findIndex((line) => line.msg === 'listening'))
      } finally {
        await server.stop()
      }
    },
    processTimeout(1, 20_000),
  )
})
