// Activity for key policy: an edit, a rotation with both key IDs, and a refused address at most once per key a minute.
import { pino } from 'pino'
import request from 'supertest'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createKeyManager } from '@saiku/core'
import { SqliteKeyStore } from '@saiku/sqlite'
import { createApp, createOncePerKey } from '../src/app.js'
import { readDashboardSettings } from '../src/dashboard/settings.js'
import { openDashboardStore } from '../src/dashboard/store/index.js'
import { cli, cliJson, processTimeout, tempDatabase } from './helpers.js'

const tenant = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'team',
  connectionName: 'w',
  subscription: { status: 'active' as const, trialEndsAt: null },
  limits: null,
}

afterEach(() => {
  vi.useRealTimers()
})

describe('createOncePerKey', () => {
  it('says yes once per key per interval, and holds at most its bound of keys', () => {
    const once = createOncePerKey(60_000, 3)
    expect(once.first('a', 0)).toBe(true)
    expect(once.first('a', 59_999)).toBe(false)
    expect(once.first('a', 60_000)).toBe(true)
    // A flood of other keys pushes the oldest out: memory stays at three keys.
    for (const key of ['b', 'c', 'd']) expect(once.first(key, 60_001)).toBe(true)
    expect(once.first('a', 60_002)).toBe(true)
    // A clock stepped back never silences a key for longer than the interval.
    expect(once.first('b', 0)).toBe(true)
  })
})

describe('Activity of key policy', () => {
  it('records an edit, a rotation with both key IDs, and a refused address once per key per minute', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(new Date('2026-12-06T00:00:00Z'))
    const store = new SqliteKeyStore(':memory:', { watchIntervalMs: 0 })
    await store.putTenant(tenant)
    const dashboard = await openDashboardStore(store)
    const { app, close } = createApp({
      store,
      logger: pino({ level: 'silent' }),
      dashboard: { store: dashboard, settings: readDashboardSettings({}) },
    })
    try {
      const admin = await createKeyManager(store).create(tenant.tenantId, {
        label: 'admin',
        permissions: ['keys:read', 'keys:write'],
      })
      const office = await createKeyManager(store).create(tenant.tenantId, {
        label: 'office',
        allowedAddresses: ['198.51.100.0/24'],
      })
      const bearer = (key: string) => ({ authorization: `Bearer ${key}` })
      const edited = await request(app)
        .patch(`/me/api-keys/${office.keyId}`)
        .set(bearer(admin.key))
        .send({ label: 'office v2' })
      expect(edited.status).toBe(200)
      const rotated = await request(app)
        .post(`/me/api-keys/${admin.keyId}/rotate`)
        .set(bearer(admin.key))
        .send({ graceSeconds: 3_600 })
      expect(rotated.status).toBe(201)
      for (let i = 0; i < 5; i++)
        expect((await request(app).get('/me/tenant').set(bearer(office.key))).status).toBe(403)
      vi.setSystemTime(new Date('2026-12-06T00:01:00Z'))
      expect((await request(app).get('/me/tenant').set(bearer(office.key))).status).toBe(403)
      // Activity is written in the background.
      await vi.waitFor(async () => expect(await dashboard.listActivity(tenant.tenantId, 50)).toHaveLength(4), {
        timeout: 10_000,
        interval: 20,
      })
      const events = (await dashboard.listActivity(tenant.tenantId, 50)).reverse()
      expect(events.map((event) => [event.action, event.actor, event.target])).toEqual([
        ['key.updated', admin.keyId, office.keyId],
        ['key.rotated', admin.keyId, `${admin.keyId} → ${rotated.body.keyId}`],
        ['key.address_refused', office.keyId, office.keyId],
        ['key.address_refused', office.keyId, office.keyId],
      ])
      expect(events[2]!.ip).toMatch(/127\.0\.0\.1$/)
    } finally {
      close()
      store.close()
    }
  })
})

describe('the CLI: keys create --allow, keys update, keys rotate --grace', () => {
  it(
    'restricts, edits and rotates keys, refusing bad values with usage errors',
    { timeout: processTimeout(12) },
    async () => {
      const db = tempDatabase()
      const env = { DATABASE_URL: db.databaseUrl, REDIS_URL: '', SAIKU_DATA_DIR: db.path }
      try {
        await cliJson(['tenants', 'create', '--slug', 'acme', '--tier', 'team', '--subscription', 'active'], env)
        const created = await cliJson<{ keyId: string; allowedAddresses: string[] }>(
          ['keys', 'create', '--tenant', 'acme', '--label', 'office', '--allow', '203.0.113.0/24, 2001:DB8::/32'],
          env,
        )
        expect(created.allowedAddresses).toEqual(['203.0.113.0/24', '2001:db8::/32'])
        const updated = await cliJson<{ label: string; allowedAddresses?: string[] }>(
          ['keys', 'update', created.keyId, '--label', 'anywhere', '--allow-any'],
          env,
        )
        expect(updated.label).toBe('anywhere')
        expect(updated.allowedAddresses).toBeUndefined()
        const rotated = await cliJson<{ keyId: string; secret: string; previousKey: { expiresAt: string } }>(
          ['keys', 'rotate', created.keyId, '--grace', '24h'],
          env,
        )
        expect(rotated.secret).toMatch(/^sk_live_/)
        const graceMs = Date.parse(rotated.previousKey.expiresAt) - Date.now()
        expect(graceMs).toBeGreaterThan(86_400_000 - 120_000)
        expect(graceMs).toBeLessThanOrEqual(86_400_000)
        const listed = await cli(['keys', 'list', '--tenant', 'acme'], env)
        expect(listed.stdout).toContain(`expires ${rotated.previousKey.expiresAt}`)
        expect(listed.stdout).not.toContain(rotated.secret)

        const cases: [string[], number, string][] = [
          [
            ['keys', 'create', '--tenant', 'acme', '--label', 'x', '--allow', '10.0.0.1/8'],
            2,
            '--allow: allowedAddresses[0] "10.0.0.1/8" has bits set past its /8 prefix (the range is "10.0.0.0/8")',
          ],
          [
            ['keys', 'create', '--tenant', 'acme', '--label', 'x', '--allow', '10.0.0.1,,'],
            2,
            '--allow: expected a comma-separated list',
          ],
          [['keys', 'update', created.keyId], 2, 'keys update needs --label, --allow or --allow-any'],
          [['keys', 'update', 'nope', '--label', 'x'], 2, '"nope" is not a key ID'],
          [['keys', 'update', 'AAAAAAAAAAAA', '--label', 'x'], 1, 'No live key AAAAAAAAAAAA.'],
          [['keys', 'rotate', rotated.keyId], 2, '--grace is required'],
          [
            ['keys', 'rotate', rotated.keyId, '--grace', '31d'],
            2,
            '--grace: expected seconds or a number of s, m, h or d',
          ],
          [['keys', 'rotate', rotated.keyId, '--grace', '1.5h'], 2, '--grace: expected seconds'],
          [['keys', 'list', '--tenant', 'acme', '--grace', '1h'], 2, '--grace: not an option of keys list'],
        ]
        for (const [args, code, message] of cases) {
          const result = await cli(args, env)
          expect([result.code, result.stderr], args.join(' ')).toEqual([code, expect.stringContaining(message)])
        }
        const keys = await cliJson<{ label: string }[]>(['keys', 'list', '--tenant', 'acme'], env)
        expect(keys.map((key) => key.label)).toEqual(['anywhere', 'anywhere'])
        const help = await cli(['help'], env)
        for (const line of ['--allow ', 'keys update KEY_ID', 'keys rotate KEY_ID --grace'])
          expect(help.stdout).toContain(line)
      } finally {
        db.remove()
      }
    },
  )
})
