import request from 'supertest'
import { describe, expect, it, vi } from 'vitest'
import { createAuthenticator, MemoryKeyStore } from '@saiku/core'
import { dryRun, rollOut } from './report-only.js'
import { acme as meteredTenant, meteredAuthenticator, tiers as meteredTiers } from './quotas.js'
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

  it('quotas: the month runs from the billing anchor and its 429 names the quota and the reset', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    try {
      vi.setSystemTime(Date.parse('2027-02-27T12:00:00Z'))
      const store = new MemoryKeyStore({ tenants: [meteredTenant], tiers: meteredTiers })
      const auth = meteredAuthenticator(store)
      const { key } = await auth.keys.create('t-acme', { label: 'agent' })
      const send = () =>
        auth.authenticate({ headers: { authorization: `Bearer ${key}` }, method: 'GET', url: '/', ip: '127.0.0.1' })
      // 1,000 a month at 10 a minute and 600 an hour: spent in the 100th minute.
      let admitted = 0
      for (let minute = 0; minute < 101; minute++) {
        vi.setSystemTime(Date.parse('2027-02-27T12:00:00Z') + minute * 60_000)
        for (let i = 0; i < 10; i++) if ((await send()).ok) admitted++
      }
      expect(admitted).toBe(1_000)
      const refused = await send()
      expect(refused).toMatchObject({
        ok: false,
        status: 429,
        headers: { 'retry-after': String(10 * 3_600 + 20 * 60) },
      })
      expect(JSON.parse((refused as { body: string }).body)).toEqual({
        error: 'rate_limited',
        message: 'Monthly quota of 1000 requests used; it resets at 2027-02-28T00:00:00Z.',
      })
      expect(await auth.usage('t-acme')).toMatchObject({ month: { used: 1_000, remaining: 0 } })
      vi.setSystemTime(Date.parse('2027-02-28T00:00:00Z'))
      expect(await send()).toMatchObject({
        ok: true,
        headers: { 'ratelimit-policy': '"minute";q=10;w=60, "hour";q=600;w=3600, "month";q=1000;w=2678400' },
      })
    } finally {
      vi.useRealTimers()
    }
  })
})
