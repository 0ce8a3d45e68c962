import { pino } from 'pino'
import request from 'supertest'
import { describe, expect, it } from 'vitest'
import { MemoryKeyStore } from '@saiku/core'
import { createApp } from '../src/app.js'
import { routeCost } from '../src/costs.js'

const acme = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'w',
  subscription: { status: 'active' as const },
}
const tenant = { tenantId: 't-acme', tenantSlug: 'acme', tier: 'starter', connectionName: 'w' }

describe('route costs of the reference server', () => {
  it('answers GET /healthz without a key and without touching any limit', async () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const { app, auth, close } = createApp({ store, logger: pino({ level: 'silent' }) })
    const { key } = await auth.authenticator.keys.create('t-acme', { label: 'agent' })
    for (let i = 0; i < 5; i++) {
      const health = await request(app).get('/healthz')
      expect(health.status).toBe(200)
      expect(health.body).toEqual({ status: 'ok' })
      expect(health.headers['ratelimit']).toBeUndefined()
    }
    expect((await request(app).post('/healthz')).status).toBe(405)
    const first = await request(app).get('/me/tenant').set('Authorization', `Bearer ${key}`)
    expect(first.headers['ratelimit']).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
    close()
  })

  it('makes reading usage free and every other route cost 1', () => {
    const at = (method: string, path: string) =>
      routeCost({ method, path, tenant, request: { headers: {}, method, url: path } })
    expect(at('GET', '/me/usage')).toBe(0)
    expect(at('GET', '/me/usage/')).toBe(0)
    expect(at('HEAD', '/ME/Usage')).toBe(0)
    expect(at('POST', '/me/usage')).toBe(1)
    expect(at('GET', '/me/usage-report')).toBe(1)
    expect(at('GET', '/me/tenant')).toBe(1)
  })

  it('does not count GET /me/usage against the tenant, whatever the route answers', async () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const { app, auth, close } = createApp({ store, logger: pino({ level: 'silent' }) })
    const { key } = await auth.authenticator.keys.create('t-acme', { label: 'agent' })
    expect((await request(app).get('/me/tenant').set('Authorization', `Bearer ${key}`)).status).toBe(200)
    for (let i = 0; i < 3; i++) await request(app).get('/me/usage').set('Authorization', `Bearer ${key}`)
    const next = await request(app).get('/me/tenant').set('Authorization', `Bearer ${key}`)
    expect(next.headers['ratelimit']).toMatch(/^"minute";r=58;t=\d+, "hour";r=998;t=\d+$/)
    close()
  })
})
