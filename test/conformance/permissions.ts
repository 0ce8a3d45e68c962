// What the app sees of the principal, and the guards of the adapter (requirePermission, ownedByTenant,
// a thrown not_found) answering in the spec's shape.
import request from 'supertest'
import { describe, expect, it } from 'vitest'
import { acme, expectJsonError, globex, useConformance } from './context.js'
import type { AdapterHarness } from './harness.js'

export function describePermissionsAndTenants(harness: AdapterHarness): void {
  describe(`adapter conformance: ${harness.name}: permissions and tenant isolation`, () => {
    const c = useConformance(harness)
    const { start, mint, get } = c

    it('answers GET /me/tenant with exactly the spec fields', async () => {
      const app = start()
      const { key } = await mint(app, acme)
      const res = await get(app, '/me/tenant', key)
      expect(res.status).toBe(200)
      expect(res.body).toEqual({
        tenantId: acme.tenantId,
        tenantSlug: 'acme',
        tier: 'starter',
        connectionName: 'acme-warehouse',
      })
    })

    it('answers 403 when the key lacks the permission', async () => {
      const app = start()
      const reader = await mint(app, acme, ['keys:read'])
      const plain = await mint(app, acme)
      const res = await get(app, '/me/api-keys', plain.key)
      expectJsonError(res, 403, 'forbidden')
      expect(res.headers['www-authenticate']).toContain('error="insufficient_scope"')
      expect(res.headers['www-authenticate']).toContain('scope="keys:read"')
      const ok = await get(app, '/me/api-keys', reader.key)
      expect(ok.status).toBe(200)
      expect(ok.body.keys.map((k: { keyId: string }) => k.keyId).sort()).toEqual([reader.keyId, plain.keyId].sort())
      expect(JSON.stringify(ok.body)).not.toContain(reader.key)
    })

    it("answers another tenant's resource with a 404 identical to a missing one", async () => {
      const app = start()
      const { key } = await mint(app, acme)
      expect((await get(app, '/me/projects/p-acme', key)).status).toBe(200)
      const foreign = await get(app, '/me/projects/p-globex', key)
      const missing = await get(app, '/me/projects/p-nothing', key)
      expectJsonError(foreign, 404, 'not_found')
      expect(foreign.text).toBe(missing.text)
      expect(foreign.headers['content-type']).toBe(missing.headers['content-type'])
    })

    it("answers revoking another tenant's key with 404, and leaves that key working", async () => {
      const app = start()
      const admin = await mint(app, acme, ['keys:write'])
      const theirs = await mint(app, globex)
      const res = await request(app.handler)
        .delete(`/me/api-keys/${theirs.keyId}`)
        .set('Authorization', `Bearer ${admin.key}`)
      const missing = await request(app.handler)
        .delete('/me/api-keys/AAAAAAAAAAAA')
        .set('Authorization', `Bearer ${admin.key}`)
      expectJsonError(res, 404, 'not_found')
      expect(res.text).toBe(missing.text)
      expect((await get(app, '/me/tenant', theirs.key)).status).toBe(200)
    })
  })
}
