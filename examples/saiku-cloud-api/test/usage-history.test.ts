import { pino } from 'pino'
import request from 'supertest'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { MemoryKeyStore } from '@saiku/core'
import { SqliteKeyStore } from '@saiku/sqlite'
import { createApp } from '../src/app.js'
import { cli, cliJson, processTimeout, tempDatabase } from './helpers.js'

// The CLI test starts processes: bounds against a hang, scaled for a loaded machine.
vi.setConfig({ testTimeout: processTimeout(4) })

const tenant = (id: string, status: 'active' | 'none' = 'active') => ({
  tenantId: id,
  tenantSlug: id.slice(2),
  tier: 'enterprise',
  connectionName: 'w',
  subscription: { status },
  limits: { perMinute: 2, perHour: 100 },
})
const silent = pino({ level: 'silent' })
const ZERO = { admitted: 0, rateLimited: 0, quotaExceeded: 0, forbidden: 0, paymentRequired: 0 }

async function setUp() {
  const store = new MemoryKeyStore({ tenants: [tenant('t-tiny'), tenant('t-other'), tenant('t-unpaid', 'none')] })
  const { app, auth, close } = createApp({ store, logger: silent, usageHistory: { flushIntervalMs: 0 } })
  const created = await auth.authenticator.keys.create('t-tiny', { label: 'agent' })
  const other = await auth.authenticator.keys.create('t-other', { label: 'other' })
  const unpaid = await auth.authenticator.keys.create('t-unpaid', { label: 'unpaid' })
  return { app, auth, close, store, created, other, unpaid, bearer: `Bearer ${created.key}` }
}

describe('GET /me/usage/history', () => {
  it('counts admitted and refused requests per hour and key, costs nothing, and reads what is not written yet', async () => {
    const { app, auth, close, created, bearer } = await setUp()
    try {
      for (let i = 0; i < 3; i++) await request(app).get('/me/tenant').set('Authorization', bearer)
      // Half the reads before a write, half after: the same counts either way.
      const before = await request(app).get('/me/usage/history').set('Authorization', bearer)
      await auth.authenticator.flushUsageHistory()
      const read = await request(app).get('/me/usage/history').set('Authorization', bearer)
      expect(read.status).toBe(200)
      expect(read.headers['content-type']).toMatch(/^application\/json/)
      // Each read costs 0 but is served: it counts as admitted (itself included), never refused by the spent minute.
      expect(before.body.totals).toEqual({ ...ZERO, admitted: 3, rateLimited: 1 })
      expect(read.body.totals).toEqual({ ...ZERO, admitted: 4, rateLimited: 1 })
      expect(read.body.granularity).toBe('hour')
      expect(read.body.points).toHaveLength(24)
      expect(read.body.points.at(-1)).toEqual({ start: expect.any(String), ...ZERO, admitted: 4, rateLimited: 1 })
      expect(read.body.keys).toEqual([{ keyId: created.keyId, ...ZERO, admitted: 4, rateLimited: 1 }])
      const byDay = await request(app)
        .get(`/me/usage/history?granularity=day&keyId=${created.keyId}`)
        .set('Authorization', bearer)
      expect(byDay.status).toBe(200)
      expect(byDay.body.points).toHaveLength(30)
      expect(byDay.body.totals.admitted).toBe(5)
    } finally {
      close()
      auth.authenticator.close()
    }
  })

  it("shows a tenant none of another tenant's requests, even by that tenant's key ID", async () => {
    const { app, auth, close, other, bearer } = await setUp()
    try {
      for (let i = 0; i < 2; i++) await request(app).get('/me/tenant').set('Authorization', `Bearer ${other.key}`)
      const read = await request(app).get(`/me/usage/history?keyId=${other.keyId}`).set('Authorization', bearer)
      expect(read.status).toBe(200)
      expect(read.body.totals).toEqual(ZERO)
      expect(read.body.keys).toEqual([])
    } finally {
      close()
      auth.authenticator.close()
    }
  })

  it.each([
    ['?since=7d', 'Unknown query parameter "since"; expected from, to, granularity, keyId.'],
    ['?from=2026-01-01T00:00:00Z&from=2026-01-02T00:00:00Z', 'The query parameter from must be given once, as text.'],
    ['?from=yesterday', 'from must be an RFC 3339 date-time, such as 2030-01-31T12:00:00Z.'],
    ['?to=2026-02-30T00:00:00Z', 'to must be an RFC 3339 date-time, such as 2030-01-31T12:00:00Z.'],
    ['?granularity=week', 'granularity must be "hour" or "day".'],
    ['?keyId=%3Cscript%3E', 'keyId must be a key ID (12 letters and digits).'],
    ['?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z', 'to must be after from'],
    ['?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z', 'from and to may be at most 2400 hours apart'],
  ])('answers %s with the JSON 400 naming what is wrong', async (query, message) => {
    const { app, auth, close, bearer } = await setUp()
    try {
      const refused = await request(app).get(`/me/usage/history${query}`).set('Authorization', bearer)
      expect(refused.status).toBe(400)
      expect(refused.body).toEqual({ error: 'invalid_request', message })
    } finally {
      close()
      auth.authenticator.close()
    }
  })

  it('answers 401 without a key, 402 without a subscription, 405 to another method, and a JSON 503 when the store cannot read', async () => {
    const { app, auth, close, store, unpaid, bearer } = await setUp()
    try {
      expect((await request(app).get('/me/usage/history')).status).toBe(401)
      const unpaidRead = await request(app).get('/me/usage/history').set('Authorization', `Bearer ${unpaid.key}`)
      expect(unpaidRead.status).toBe(402)
      const posted = await request(app).post('/me/usage/history').set('Authorization', bearer)
      expect([posted.status, posted.headers.allow, posted.body.error]).toEqual([405, 'GET', 'method_not_allowed'])
      vi.spyOn(store, 'readUsage').mockRejectedValueOnce(new Error('disk I/O error at /var/lib/secret.db'))
      const failed = await request(app).get('/me/usage/history').set('Authorization', bearer)
      expect(failed.status).toBe(503)
      expect(failed.body.error).toBe('service_unavailable')
      expect(failed.text).not.toContain('secret.db')
    } finally {
      close()
      auth.authenticator.close()
    }
  })
})

describe('pnpm saiku usage --history', () => {
  const db = tempDatabase()
  afterAll(() => db.remove())
  const env = { DATABASE_URL: db.databaseUrl, REDIS_URL: '', SAIKU_DATA_DIR: db.path }

  it('prints the hours or days the servers wrote, and the keys, as text and as JSON', async () => {
    await cliJson(['tenants', 'create', '--slug', 'histo', '--tier', 'team', '--subscription', 'active'], env)
    const key = await cliJson<{ keyId: string; secret: string }>(
      ['keys', 'create', '--tenant', 'histo', '--label', 'agent'],
      env,
    )
    // A server's writes: three requests by the key an hour ago.
    const store = new SqliteKeyStore(db.databaseUrl.slice('sqlite:'.length), { watchIntervalMs: 0 })
    const { tenantId } = (await store.findTenantBySlug('histo'))!
    const hourStartMs = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000
    await store.addUsage([{ tenantId, keyId: key.keyId, hourStartMs, ...ZERO, admitted: 3, quotaExceeded: 2 }])
    store.close()

    const json = await cliJson<{ totals: unknown; granularity: string; keys: unknown[] }>(
      ['usage', '--tenant', 'histo', '--history', '--since', '24h'],
      env,
    )
    expect(json.granularity).toBe('hour')
    expect(json.totals).toEqual({ ...ZERO, admitted: 3, quotaExceeded: 2 })
    expect(json.keys).toEqual([{ keyId: key.keyId, ...ZERO, admitted: 3, quotaExceeded: 2 }])
    const text = await cli(['usage', '--tenant', 'histo', '--history'], env)
    expect(text.code).toBe(0)
    expect(text.stdout).toMatch(/^histo: requests per day from /)
    expect(text.stdout).toMatch(/\ntotal\s+3\s+0\s+2\s+0\s+0\n/)
    expect(text.stdout).toContain(key.keyId)

    const bad = await cli(['usage', '--tenant', 'histo', '--history', '--since', '1y'], env)
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain(
      '--since: expected a number of hours or days (such as 24h, 7d or 30d), at most 90 days',
    )
    expect((await cli(['usage', '--tenant', 'histo', '--since', '7d'], env)).code).toBe(2)
    expect((await cli(['keys', 'list', '--tenant', 'histo', '--history'], env)).code).toBe(2)
  })
})
