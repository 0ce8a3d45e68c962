// The limiter's answer on the wire: status, Retry-After and the RateLimit fields, under concurrency, and
// in the header modes. The window arithmetic itself is tested once in @saiku/core.
import request from 'supertest'
import { describe, expect, it } from 'vitest'
import { acme, expectJsonError, globex, STARTER_POLICY, T0, useConformance } from './context.js'
import type { AdapterHarness } from './harness.js'

export function describeRateLimits(harness: AdapterHarness): void {
  describe(`adapter conformance: ${harness.name}: rate limits and headers`, () => {
    const c = useConformance(harness)
    const { start, mint, get } = c

    it('admits exactly 60 of 100 concurrent starter requests', async () => {
      const app = start()
      const { key } = await mint(app, acme)
      const responses = await Promise.all(Array.from({ length: 100 }, () => get(app, '/me/tenant', key)))
      const statuses = responses.map((res) => res.status)
      expect(statuses.filter((status) => status === 200)).toHaveLength(60)
      expect(statuses.filter((status) => status === 429)).toHaveLength(40)
      expect(c.fixtures.hits.tenant).toBe(60)
    })

    it('counts down, then answers the 61st request with 429 and when to retry', async () => {
      const app = start()
      const { key } = await mint(app, acme)
      for (let i = 1; i <= 60; i++) {
        const res = await get(app, '/me/tenant', key)
        expect(res.status).toBe(200)
        expect(res.headers['ratelimit-policy']).toBe(STARTER_POLICY)
        expect(res.headers['ratelimit']).toBe(`"minute";r=${60 - i};t=60, "hour";r=${1000 - i};t=3600`)
      }
      c.clock.set(T0 + 15_000)
      const res = await get(app, '/me/tenant', key)
      expectJsonError(res, 429, 'rate_limited', 'Rate limit exceeded: 60 requests per minute. Retry in 45 s.')
      expect(res.headers['retry-after']).toBe('45')
      expect(res.headers['ratelimit']).toBe('"minute";r=0;t=45, "hour";r=940;t=3585')
      expect(res.headers['ratelimit-policy']).toBe(STARTER_POLICY)
      expect(res.headers['cache-control']).toBe('no-store')
      expect(c.fixtures.hits.tenant).toBe(60)

      c.clock.set(T0 + 60_000)
      const again = await get(app, '/me/tenant', key)
      expect(again.status).toBe(200)
      expect(again.headers['ratelimit']).toBe('"minute";r=59;t=60, "hour";r=939;t=3540')
    })

    it('rotates without downtime: both keys work, the old one is revoked, counts carry on', async () => {
      const app = start()
      const old = await mint(app, acme, ['keys:write'], 'production-agent')
      for (let i = 0; i < 10; i++) expect((await get(app, '/me/tenant', old.key)).status).toBe(200)
      const fresh = await mint(app, acme, ['keys:write'], 'production-agent')
      expect((await get(app, '/me/tenant', old.key)).status).toBe(200)
      expect((await get(app, '/me/tenant', fresh.key)).status).toBe(200)

      const revoke = await request(app.handler)
        .delete(`/me/api-keys/${old.keyId}`)
        .set('Authorization', `Bearer ${fresh.key}`)
      expect(revoke.status).toBe(204)
      expectJsonError(await get(app, '/me/tenant', old.key), 401, 'unauthorized')
      const after = await get(app, '/me/tenant', fresh.key)
      expect(after.status).toBe(200)
      // 10 + 2 + the revoke + this one: the count was never reset.
      expect(after.headers['ratelimit']).toBe('"minute";r=46;t=60, "hour";r=986;t=3600')
    })

    it('switches the fields to legacy or off', async () => {
      const legacy = start({ rateLimitHeaders: 'legacy' })
      const res = await get(legacy, '/me/tenant', (await mint(legacy, acme)).key)
      expect(res.headers).toMatchObject({
        'x-ratelimit-limit-minute': '60',
        'x-ratelimit-remaining-minute': '59',
        'x-ratelimit-limit-hour': '1000',
        'x-ratelimit-remaining-hour': '999',
        'x-ratelimit-reset': '60',
      })
      expect(res.headers['ratelimit']).toBeUndefined()
      const none = start({ rateLimitHeaders: 'none' })
      const quiet = await get(none, '/me/tenant', (await mint(none, globex)).key)
      expect(quiet.status).toBe(200)
      expect(Object.keys(quiet.headers).filter((name) => name.includes('ratelimit'))).toEqual([])
    })
  })
}
