// The cost function is asked about the request as the adapter maps it: method, the path below the mount point, query left off.
import request from 'supertest'
import { describe, expect, it } from 'vitest'
import { acme, useConformance } from './context.js'
import type { AdapterHarness } from './harness.js'

export function describeCost(harness: AdapterHarness): void {
  describe(`adapter conformance: ${harness.name}: per-route cost`, () => {
    const c = useConformance(harness)
    const { start, mint, get } = c

    it('asks the cost function once per request with the method, the mounted path and the tenant', async () => {
      const seen: unknown[] = []
      const app = start(
        { cost: ({ method, path, tenant: who }) => (seen.push({ method, path, slug: who.tenantSlug }), 1) },
        { mountAt: '/api' },
      )
      const { key } = await mint(app, acme)
      expect((await get(app, '/api/me/tenant?verbose=1', key)).status).toBe(200)
      // Another method, as sent: the key lacks keys:write, so the route refuses after the cost was asked.
      const deleted = await request(app.handler).delete('/api/me/api-keys/k-1').set('Authorization', `Bearer ${key}`)
      expect(deleted.status).toBe(403)
      expect(seen).toEqual([
        { method: 'GET', path: '/me/tenant', slug: 'acme' },
        { method: 'DELETE', path: '/me/api-keys/k-1', slug: 'acme' },
      ])
    })
  })
}
