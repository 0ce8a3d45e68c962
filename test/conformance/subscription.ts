// The 402 and its exempt routes: exemptions are matched against the path as the framework routes it,
// which only the adapter can hand in (case, trailing slash, absolute-form target, a router's mount point).
import { describe, expect, it } from 'vitest'
import { rawGet } from '@saiku/test-support/http'
import { acme, expectJsonError, SPEC_402, unpaid, useConformance } from './context.js'
import type { AdapterHarness } from './harness.js'

export function describeSubscription(harness: AdapterHarness): void {
  describe(`adapter conformance: ${harness.name}: subscription`, () => {
    const c = useConformance(harness)
    const { start, mint, get } = c

    it('answers 402 with the spec body to a tenant without a subscription, except on exempt routes', async () => {
      const app = start({ subscription: { exemptPaths: ['/me/billing'] } })
      const { key } = await mint(app, unpaid)
      const res = await get(app, '/me/tenant', key)
      expectJsonError(res, 402, 'payment_required', SPEC_402)
      expect(c.fixtures.hits.tenant).toBe(0)
      const billing = await get(app, '/me/billing', key)
      expect(billing.status).toBe(200)
      expect(billing.body).toEqual({ status: 'none' })
      expect(billing.headers['ratelimit']).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
      expect((await get(app, '/me/billingx', key)).status).toBe(402)
    })

    it('matches exempt paths the way the framework routes them: in any case, from an absolute-form target', async () => {
      const app = start({ subscription: { exemptPaths: ['/me/billing'] } })
      const { key } = await mint(app, unpaid)
      for (const path of ['/ME/billing', '/me/Billing', '/me/billing/', '/me/billing?from=test']) {
        const res = await get(app, path, key)
        expect(res.status, path).toBe(200)
        expect(res.body).toEqual({ status: 'none' })
      }
      const absolute = await rawGet(app.handler, 'http://api.example.test/me/billing', [
        'Authorization',
        `Bearer ${key}`,
      ])
      expect(absolute.status).toBe(200)
      expect(JSON.parse(absolute.body)).toEqual({ status: 'none' })
      const absoluteTenant = await rawGet(app.handler, 'http://api.example.test/me/tenant', [
        'Authorization',
        `Bearer ${key}`,
      ])
      expect(absoluteTenant.status).toBe(402)
      expectJsonError(await get(app, '/ME/TENANT', key), 402, 'payment_required', SPEC_402)
      expect(c.fixtures.hits.tenant).toBe(0)
    })

    it('matches exempt paths below the mount point when the middleware is mounted in a router', async () => {
      const app = start({ subscription: { exemptPaths: ['/me/billing'] } }, { mountAt: '/api' })
      const { key } = await mint(app, unpaid)
      for (const path of ['/api/me/billing', '/api/ME/Billing', '/api/me/billing/']) {
        const res = await get(app, path, key)
        expect(res.status, path).toBe(200)
        expect(res.body).toEqual({ status: 'none' })
      }
      expectJsonError(await get(app, '/api/me/tenant', key), 402, 'payment_required', SPEC_402)
      const paid = await mint(app, acme)
      expect((await get(app, '/api/me/tenant', paid.key)).body).toMatchObject({ tenantSlug: 'acme' })
      expect(c.fixtures.hits.tenant).toBe(1)
    })
  })
}
