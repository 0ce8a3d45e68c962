import { pino } from 'pino'
import request from 'supertest'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { MemoryKeyStore } from '@saiku/core'
import { redisUrl } from './services.js'
import { createApp } from '../src/app.js'
import { cli, cliJson, processTimeout, startServer, tempDatabase, type RunningServer, type TempDir } from './helpers.js'

// Its tests start server and CLI processes: bounds against a hang, scaled for a loaded machine.
vi.setConfig({ testTimeout: processTimeout(6), hookTimeout: processTimeout(2) })

const tiny = {
  tenantId: 't-tiny',
  tenantSlug: 'tiny',
  tier: 'enterprise',
  connectionName: 'w',
  subscription: { status: 'active' as const },
  limits: { perMinute: 3, perHour: 10 },
}
const silent = pino({ level: 'silent' })

describe('GET /me/usage, limits in memory', () => {
  it('reads both windows without spending, is answered when the limits are spent, and carries the RateLimit fields', async () => {
    const { app, auth, close } = createApp({ store: new MemoryKeyStore({ tenants: [tiny] }), logger: silent })
    const { key } = await auth.authenticator.keys.create('t-tiny', { label: 'agent' })
    const bearer = `Bearer ${key}`
    try {
      for (let i = 0; i < 2; i++)
        expect((await request(app).get('/me/tenant').set('Authorization', bearer)).status).toBe(200)
      for (let i = 0; i < 5; i++) {
        const read = await request(app).get('/me/usage').set('Authorization', bearer)
        expect(read.status).toBe(200)
        expect(read.body).toEqual({
          tenantId: 't-tiny',
          limits: { perMinute: 3, perHour: 10 },
          minute: { window: 'minute', quota: 3, used: 2, remaining: 1, resetSeconds: expect.any(Number) },
          hour: { window: 'hour', quota: 10, used: 2, remaining: 8, resetSeconds: expect.any(Number) },
        })
        expect(read.headers['ratelimit-policy']).toBe('"minute";q=3;w=60, "hour";q=10;w=3600')
        expect(read.headers['ratelimit']).toMatch(/^"minute";r=1;t=\d+, "hour";r=8;t=\d+$/)
      }
      // Five reads spent nothing: the third request is still admitted, the fourth refused.
      expect((await request(app).get('/me/tenant').set('Authorization', bearer)).status).toBe(200)
      const refused = await request(app).get('/me/tenant').set('Authorization', bearer)
      expect(refused.status).toBe(429)
      // Spent: usage still answers, saying so, and is what the same authenticator's usage() reads.
      const spent = await request(app).get('/me/usage').set('Authorization', bearer)
      expect(spent.status).toBe(200)
      expect(spent.headers['retry-after']).toBeUndefined()
      expect(spent.body.minute).toMatchObject({ used: 3, remaining: 0 })
      expect(spent.body).toEqual({
        ...(await auth.authenticator.usage('t-tiny')),
        minute: { ...spent.body.minute },
        hour: { ...spent.body.hour },
      })
      expect((await auth.authenticator.usage('t-tiny'))?.hour).toMatchObject({ used: 3, remaining: 7 })
    } finally {
      close()
    }
  })

  it('after a downgrade, tells the true count in both windows, above the new minute quota, with nothing remaining', async () => {
    const store = new MemoryKeyStore({ tenants: [{ ...tiny, limits: { perMinute: 10, perHour: 20 } }] })
    const { app, auth, close } = createApp({ store, logger: silent })
    const { key } = await auth.authenticator.keys.create('t-tiny', { label: 'agent' })
    const bearer = `Bearer ${key}`
    try {
      for (let i = 0; i < 5; i++)
        expect((await request(app).get('/me/tenant').set('Authorization', bearer)).status).toBe(200)
      store.putTenant(tiny)
      auth.authenticator.invalidateTenant('t-tiny')
      const read = await request(app).get('/me/usage').set('Authorization', bearer)
      expect(read.status).toBe(200)
      expect(read.body).toEqual({
        tenantId: 't-tiny',
        limits: { perMinute: 3, perHour: 10 },
        minute: { window: 'minute', quota: 3, used: 5, remaining: 0, resetSeconds: expect.any(Number) },
        hour: { window: 'hour', quota: 10, used: 5, remaining: 5, resetSeconds: expect.any(Number) },
      })
      expect(read.body).toEqual({
        ...(await auth.authenticator.usage('t-tiny')),
        minute: { ...read.body.minute },
        hour: { ...read.body.hour },
      })
      expect((await auth.authenticator.usage('t-tiny'))?.minute).toMatchObject({ used: 5, remaining: 0 })
    } finally {
      close()
    }
  })

  it('refuses what every route refuses: no key 401, another method 405', async () => {
    const { app, auth, close } = createApp({ store: new MemoryKeyStore({ tenants: [tiny] }), logger: silent })
    const { key } = await auth.authenticator.keys.create('t-tiny', { label: 'agent' })
    try {
      const missing = await request(app).get('/me/usage')
      expect([missing.status, missing.body.error]).toEqual([401, 'unauthorized'])
      const post = await request(app).post('/me/usage').set('Authorization', `Bearer ${key}`)
      expect([post.status, post.body.error, post.headers.allow]).toEqual([405, 'method_not_allowed', 'GET'])
      // Only reading usage is free: another method counts like a wrong method on any route.
      expect((await auth.authenticator.usage('t-tiny'))?.minute).toMatchObject({ used: 1 })
    } finally {
      close()
    }
  })
})

describe.skipIf(redisUrl === undefined)('usage with limits in Redis, across processes', () => {
  let db: TempDir
  let env: Record<string, string>
  let server: RunningServer

  beforeAll(async () => {
    db = tempDatabase()
    env = { DATABASE_URL: db.databaseUrl, REDIS_URL: redisUrl!, SAIKU_DATA_DIR: db.path }
    server = await startServer(env)
  })
  afterAll(async () => {
    await server?.stop()
    db?.remove()
  })

  it('pnpm saiku usage prints what the server counted, and the server answers the same', async () => {
    const tenant = await cliJson<{ tenantId: string }>(
      ['tenants', 'create', '--slug', 'counted', '--tier', 'starter', '--subscription', 'active'],
      env,
    )
    const { secret } = await cliJson<{ secret: string }>(
      ['keys', 'create', '--tenant', 'counted', '--label', 'usage'],
      env,
    )
    const headers = { authorization: `Bearer ${secret}` }
    for (let i = 0; i < 4; i++) expect((await fetch(`${server.url}/me/tenant`, { headers })).status).toBe(200)

    const printed = await cliJson<{ tenantId: string; minute: { used: number }; hour: { used: number } }>(
      ['usage', '--tenant', 'counted'],
      env,
    )
    expect(printed).toMatchObject({
      tenantId: tenant.tenantId,
      limits: { perMinute: 60, perHour: 1000 },
      minute: { window: 'minute', quota: 60, used: 4, remaining: 56 },
      hour: { window: 'hour', quota: 1000, used: 4, remaining: 996 },
    })
    const served = await fetch(`${server.url}/me/usage`, { headers })
    expect(served.status).toBe(200)
    const body = await served.json()
    expect(body).toMatchObject({
      tenantId: tenant.tenantId,
      minute: { used: 4, remaining: 56 },
      hour: { used: 4, remaining: 996 },
    })
    expect(served.headers.get('ratelimit')).toMatch(/^"minute";r=56;t=\d+, "hour";r=996;t=\d+$/)
    // Neither the CLI nor the route counted: the next request is the fifth.
    const fifth = await fetch(`${server.url}/me/tenant`, { headers })
    expect(fifth.headers.get('ratelimit')).toMatch(/^"minute";r=55;/)

    const human = await cli(['usage', '--tenant', 'counted'], env)
    expect(human.code).toBe(0)
    expect(human.stdout).toContain('minute: 5 of 60 used, 55 remaining, resets in ')
    expect(human.stdout).toContain('hour:   5 of 1000 used, 995 remaining, resets in ')
    const unknown = await cli(['usage', '--tenant', 'nobody-here', '--json'], env)
    expect([unknown.code, JSON.parse(unknown.stderr)]).toEqual([
      1,
      { error: 'not_found', message: 'No tenant with slug "nobody-here".' },
    ])
    const missing = await cli(['usage'], env)
    expect([missing.code, missing.stderr]).toEqual([2, expect.stringContaining('--tenant is required')])
  })
})
