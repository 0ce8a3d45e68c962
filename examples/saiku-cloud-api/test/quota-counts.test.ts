import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import { createMemoryLimiter, type TenantAdminStore } from '@saiku/core'
import { PostgresKeyStore } from '@saiku/postgres'
import { SqliteKeyStore } from '@saiku/sqlite'
import { keepQuotaCounts, readQuotaFlushMs, readTierQuotas } from '../src/quota-counts.js'
import { postgresUrl } from './services.js'

const NOW_MS = Date.parse('2030-01-10T12:00:00Z')
const limits = { perMinute: 1_000, perHour: 1_000, perDay: 1_000, perMonth: 1_000 }

describe('TIER_QUOTAS and QUOTA_FLUSH_MS', () => {
  it('give the built-in tiers day and month quotas over their own minute and hour', () => {
    expect(readTierQuotas(undefined)).toBeUndefined()
    expect(readTierQuotas(' ')).toBeUndefined()
    expect(readTierQuotas('starter.perDay=5000, starter.perMonth=100000,team.perMonth=1000000')).toEqual({
      starter: { perMinute: 60, perHour: 1_000, perDay: 5_000, perMonth: 100_000 },
      team: { perMinute: 300, perHour: 10_000, perMonth: 1_000_000 },
    })
  })

  it('refuse anything else with one line naming the setting', () => {
    expect(() => readTierQuotas('starter.perWeek=5')).toThrow(
      'TIER_QUOTAS: expected a list of TIER.perDay=N and TIER.perMonth=N, got "starter.perWeek=5"',
    )
    expect(() => readTierQuotas('starter.perMonth=-1')).toThrow('TIER_QUOTAS: expected')
    expect(() => readTierQuotas(`starter.perMonth=${'9'.repeat(10_000)}`)).toThrow('TIER_QUOTAS: expected')
    expect(() => readTierQuotas('enterprise.perMonth=5')).toThrow(
      'TIER_QUOTAS: no tier "enterprise" with limits of its own; the tiers are starter, team, business',
    )
    expect(() => readTierQuotas('__proto__.perMonth=5')).toThrow('TIER_QUOTAS: no tier "__proto__"')
    expect(readQuotaFlushMs(undefined)).toBe(10_000)
    expect(readQuotaFlushMs('2500')).toBe(2_500)
    for (const bad of ['0', '99', '1e4', '-5', 'soon', '9999999999'])
      expect(() => readQuotaFlushMs(bad)).toThrow('QUOTA_FLUSH_MS: expected a whole number of milliseconds from 100')
  })
})

const stores: {
  name: string
  skip: boolean
  open: () => Promise<{ store: TenantAdminStore; rows: () => Promise<number>; close: () => Promise<void> }>
}[] = [
  {
    name: 'SQLite',
    skip: false,
    open: async () => {
      const store = new SqliteKeyStore(':memory:', { watchIntervalMs: 0 })
      const rows = async () =>
        store.db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM saiku_quota_counts').get()!.n
      return { store, rows, close: async () => store.close() }
    },
  },
  {
    name: 'PostgreSQL',
    skip: postgresUrl === undefined,
    open: async () => {
      const schema = `quota_counts_${randomUUID().replaceAll('-', '').slice(0, 12)}`
      const pool = new pg.Pool({ connectionString: postgresUrl, max: 4 })
      const store = new PostgresKeyStore({ pool, schema, listen: false })
      await store.ready()
      return {
        store,
        rows: async () =>
          Number(
            (await pool.query<{ n: string }>(`SELECT COUNT(*) AS n FROM "${schema}".saiku_quota_counts`)).rows[0]!.n,
          ),
        close: async () => {
          await store.close()
          await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
          await pool.end()
        },
      }
    },
  },
]

for (const setup of stores) {
  describe.skipIf(setup.skip)(`the saved quota counts (${setup.name})`, () => {
    const opened: { close: () => Promise<void> }[] = []
    afterAll(async () => {
      for (const one of opened) await one.close()
    })

    it('a late or lower batch never lowers a saved count, and ended windows are deleted', async () => {
      const db = await setup.open()
      opened.push(db)
      let nowMs = NOW_MS
      const now = () => nowMs
      const onError = (error: Error) => {
        throw error
      }
      // Two processes on one database, each counting its own requests.
      const a = createMemoryLimiter({ now })
      const b = createMemoryLimiter({ now })
      const keptA = await keepQuotaCounts(db.store, a, { flushMs: 3_600_000, onError, now })
      const keptB = await keepQuotaCounts(db.store, b, { flushMs: 3_600_000, onError, now })
      for (let i = 0; i < 5; i++) a.consumeSync('t', limits)
      b.consumeSync('t', limits)
      expect(await keptA.saver.flush()).toBe(2)
      expect(await keptB.saver.flush()).toBe(2) // b's 1 arrives after a's 5
      expect(await keptA.saver.flush()).toBe(0) // nothing new
      const fresh = createMemoryLimiter({ now })
      const loaded = await keepQuotaCounts(db.store, fresh, { flushMs: 3_600_000, onError, now })
      expect(loaded.loaded).toBe(2)
      expect(fresh.peekSync('t', limits)).toMatchObject({ day: { used: 5 }, month: { used: 5 } })
      // The next day: the day row ended and is deleted at the next write; the month's stays.
      nowMs += 86_400_000
      a.consumeSync('t', limits)
      await keptA.saver.flush()
      expect(await db.rows()).toBe(2)
      const later = createMemoryLimiter({ now })
      const reloaded = await keepQuotaCounts(db.store, later, { flushMs: 3_600_000, onError, now })
      expect(reloaded.loaded).toBe(2)
      expect(later.peekSync('t', limits)).toMatchObject({ day: { used: 1 }, month: { used: 6 } })
      for (const kept of [keptA, keptB, loaded, reloaded]) kept.saver.stop()
    })
  })
}

describe('a write that fails', () => {
  it('keeps its rows for the next batch', async () => {
    const store = new SqliteKeyStore(':memory:', { watchIntervalMs: 0 })
    const limiter = createMemoryLimiter({ now: () => NOW_MS })
    const kept = await keepQuotaCounts(store, limiter, { flushMs: 3_600_000, onError: () => {}, now: () => NOW_MS })
    for (let i = 0; i < 3; i++) limiter.consumeSync('t', limits)
    store.db.exec('ALTER TABLE saiku_quota_counts RENAME TO saiku_quota_counts_away')
    await expect(kept.saver.flush()).rejects.toThrow(/saiku_quota_counts/)
    limiter.consumeSync('t', limits)
    store.db.exec('ALTER TABLE saiku_quota_counts_away RENAME TO saiku_quota_counts')
    expect(await kept.saver.flush()).toBe(2)
    const rows = store.db.prepare('SELECT quota_window, count FROM saiku_quota_counts ORDER BY quota_window').all()
    expect(rows).toEqual([
      { quota_window: 'day', count: 4 },
      { quota_window: 'month', count: 4 },
    ])
    kept.saver.stop()
    store.close()
  })
})
