import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { afterEach, describe, expect, it } from 'vitest'
import { createKeyManager, type TenantAdminStore } from '@saiku/core'
import { conformanceTenant } from '@saiku/core/testing'
import { PostgresKeyStore } from '@saiku/postgres'
import { sweepTimeEvents } from '../../src/webhooks/scheduler.js'
import { openWebhookSql, type WebhookSql } from '../../src/webhooks/sql.js'
import { postgresUrl } from '../services.js'
import { sqliteSetup } from './support.js'

const cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

const DAY_MS = 86_400_000

async function outbox(sql: WebhookSql) {
  const rows = await sql.all<{ type: string; data: string | Record<string, unknown> }>(
    `SELECT type, data FROM ${sql.table('saiku_outbox')} WHERE type NOT IN ('key.created') ORDER BY id`,
    [],
  )
  return rows.map((row) => ({
    type: row.type,
    data: (typeof row.data === 'string' ? JSON.parse(row.data) : row.data) as Record<string, unknown>,
  }))
}

/** The same checks on SQLite and on PostgreSQL, whose key tables keep times differently. */
async function checkSchedule(store: TenantAdminStore, sql: WebhookSql, tenantId: string) {
  const startMs = Date.now()
  const keys = createKeyManager(store, { now: () => startMs })
  const key = await keys.create(tenantId, { label: 'expiring', expiresAt: new Date(startMs + 6 * DAY_MS) })
  await store.putTenant({
    ...(await store.findTenant(tenantId))!,
    subscription: { status: 'trialing', trialEndsAt: new Date(startMs + 2 * DAY_MS) },
  })
  // Two processes sweep at once, and again: each event once.
  const first = await Promise.all([sweepTimeEvents(sql, startMs), sweepTimeEvents(sql, startMs)])
  expect(first[0] + first[1]).toBe(2)
  expect(await sweepTimeEvents(sql, startMs + 60_000)).toBe(0)
  expect((await outbox(sql)).map((event) => [event.type, event.data.expiresInDays ?? null])).toEqual([
    ['key.expiring', 7],
    ['trial.ending', null],
  ])
  expect(await sweepTimeEvents(sql, startMs + 2 * DAY_MS)).toBe(1) // trial.ended
  expect(await sweepTimeEvents(sql, startMs + 5 * DAY_MS + 1)).toBe(1) // 1 day left
  expect(await sweepTimeEvents(sql, startMs + 5 * DAY_MS + 2)).toBe(0)
  expect(await sweepTimeEvents(sql, startMs + 6 * DAY_MS)).toBe(1) // expired
  expect(await sweepTimeEvents(sql, startMs + 6 * DAY_MS + 3_600_000)).toBe(0)
  const events = await outbox(sql)
  expect(events.map((event) => [event.type, event.data.expiresInDays ?? null])).toEqual([
    ['key.expiring', 7],
    ['trial.ending', null],
    ['trial.ended', null],
    ['key.expiring', 1],
    ['key.expired', null],
  ])
  expect(events[0]!.data).toEqual({
    keyId: key.keyId,
    label: 'expiring',
    environment: 'live',
    expiresAt: new Date(startMs + 6 * DAY_MS).toISOString(),
    expiresInDays: 7,
  })
  expect(events[1]!.data).toEqual({ trialEndsAt: new Date(startMs + 2 * DAY_MS).toISOString() })
}

describe('time-based webhook events', () => {
  it('fires key.expiring (7 d, 1 d), key.expired, trial.ending and trial.ended once each, across sweeps (SQLite)', async () => {
    const db = await sqliteSetup(Date.now)
    cleanups.push(db.close)
    await checkSchedule(db.store, db.sql, db.tenant.tenantId)
    // A restart is a new sweep over the same database: nothing fires again.
    expect(await sweepTimeEvents(db.sql, Date.now() + 6 * DAY_MS)).toBe(0)
  })

  it.skipIf(postgresUrl === undefined)('does the same on PostgreSQL', async () => {
    const schema = `saiku_test_${randomUUID().replaceAll('-', '').slice(0, 16)}`
    const pool = new pg.Pool({ connectionString: postgresUrl, max: 4 })
    cleanups.push(async () => {
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      await pool.end()
    })
    const store = new PostgresKeyStore({ pool, schema, listen: false, outbox: true })
    cleanups.push(() => store.close())
    const tenant = conformanceTenant()
    await store.putTenant(tenant)
    await checkSchedule(store, await openWebhookSql(store), tenant.tenantId)
  })
})
