import request from 'supertest'
import { describe, expect, it } from 'vitest'
import { createAuthenticator, MemoryKeyStore } from '@saiku/core'
import { dryRun, rollOut } from './report-only.js'
import { usageLine } from './usage.js'

const acme = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'enterprise',
  connectionName: 'w',
  subscription: { status: 'active' as const },
  limits: { perMinute: 2, perHour: 10 },
}
const starter = { ...acme, tenantId: 't-starter', tenantSlug: 'starter', tier: 'starter', limits: null }

describe('the README snippets, run', () => {
  it('report-only limits: the starter tier is admitted past its limits and each would-be refusal logged; others are enforced', async () => {
    const store = new MemoryKeyStore({ tenants: [acme, starter] })
    const keys = createAuthenticator(store).keys
    const lines: object[] = []
    const app = rollOut(store, (line) => lines.push(line))
    const { key } = await keys.create('t-starter', { label: 'a' })
    for (let i = 0; i < 60; i++) await request(app).get('/me/tenant').set('Authorization', `Bearer ${key}`)
    const over = await request(app).get('/me/tenant').set('Authorization', `Bearer ${key}`)
    expect([over.status, over.body.overLimit]).toEqual([200, true])
    expect(lines).toEqual([{ msg: 'would refuse', status: 429, reason: 'rate_limited', tenantId: 't-starter' }])
    const { key: acmeKey } = await keys.create('t-acme', { label: 'a' })
    const statuses = []
    for (let i = 0; i < 3; i++)
      statuses.push((await request(app).get('/me/tenant').set('Authorization', `Bearer ${acmeKey}`)).status)
    expect(statuses).toEqual([200, 200, 429])
    expect((await request(app).get('/me/tenant')).status).toBe(401)
  })

  it('report-only authentication: a failing key reaches the route without a principal', async () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const res = await request(dryRun(store)).get('/me/tenant').set('Authorization', 'Bearer sk_live_nonsense')
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ tenantId: null, wouldBe: { status: 401, code: 'unauthorized', reason: 'malformed' } })
  })

  it('usage: reads what was counted, spending nothing', async () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const auth = createAuthenticator(store)
    const { key } = await auth.keys.create('t-acme', { label: 'a' })
    await auth.authenticate({ headers: { authorization: `Bearer ${key}` }, method: 'GET', url: '/' })
    expect(await usageLine(auth, 't-acme')).toBe('1 of 2 this minute (resets in 60 s), 1 of 10 this hour')
    expect(await usageLine(auth, 't-acme')).toBe('1 of 2 this minute (resets in 60 s), 1 of 10 this hour')
    expect(await usageLine(auth, 't-nobody')).toBe('no such tenant')
  })
})
