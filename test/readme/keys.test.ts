import express from 'express'
import request from 'supertest'
import { describe, expect, it, vi } from 'vitest'
import { MemoryKeyStore, saikuAuth } from '@saiku/express'
import { mintAndRotate } from './keys.js'

const tenant = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'w',
  subscription: { status: 'active' as const },
}

describe("the usage guide's key management, run", () => {
  it('mints a key shown once, rotates it to a successor with its label and permissions, and revokes the old one', async () => {
    const store = new MemoryKeyStore({ tenants: [tenant, { ...tenant, tenantId: 't-other', tenantSlug: 'other' }] })
    const auth = saikuAuth(store)
    const app = express()
      .use(auth)
      .get('/me/tenant', (req, res) => {
        res.json(req.saiku!.tenant)
      })
    const printed: string[] = []
    vi.spyOn(console, 'log').mockImplementation((line: string) => printed.push(line))
    const successor = await mintAndRotate(auth, 't-acme')
    const minted = /^Your key, shown once: (sk_live_\w+)$/.exec(printed.join('\n'))?.[1]
    expect(minted).toBeDefined()
    expect(successor).not.toBeNull()
    const listed = await auth.authenticator.keys.list('t-acme')
    expect(listed).toEqual([
      expect.objectContaining({ keyId: successor!.keyId, label: 'production-agent', permissions: ['keys:read'] }),
    ])
    const status = async (key: string) =>
      (await request(app).get('/me/tenant').set('Authorization', `Bearer ${key}`)).status
    expect([await status(minted!), await status(successor!.key)]).toEqual([401, 200])
    // Another tenant's key ID and an unknown one are refused alike, so the route answers the same 404.
    expect(await auth.authenticator.keys.revoke('t-other', successor!.keyId)).toBe(false)
    expect(await auth.authenticator.keys.revoke('t-acme', 'AAAAAAAAAAAA')).toBe(false)
    expect(JSON.stringify(await store.findKey(successor!.keyId))).not.toContain(successor!.key)
  })
})
