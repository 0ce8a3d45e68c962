import express from 'express'
import request from 'supertest'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { MemoryKeyStore, saikuAuth } from '@saiku/express'
import { officeKey } from './key-policy.js'

const tenant = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'w',
  subscription: { status: 'active' as const },
}

afterEach(() => {
  vi.useRealTimers()
})

describe("the usage guide's allowed addresses and rotation, run", () => {
  it('admits the key from the office only, and ends the old key when its grace does', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(new Date('2026-12-06T00:00:00Z'))
    const store = new MemoryKeyStore({ tenants: [tenant] })
    const auth = saikuAuth(store)
    const app = express()
      .set('trust proxy', 'loopback')
      .use(auth)
      .get('/me/tenant', (req, res) => {
        res.json(req.saiku!.tenant)
      })
    const successor = (await officeKey(auth, 't-acme'))!
    expect(successor.allowedAddresses).toEqual(['203.0.113.0/24'])
    const from = async (key: string, address: string) =>
      (await request(app).get('/me/tenant').set('Authorization', `Bearer ${key}`).set('X-Forwarded-For', address))
        .status
    expect(await from(successor.key, '203.0.113.50')).toBe(200)
    expect(await from(successor.key, '2001:db8:abcd::1')).toBe(403)
    const old = (await store.findKey(successor.previousKey.keyId))!
    expect(old.expiresAt).toEqual(new Date('2026-12-07T00:00:00Z'))
    vi.setSystemTime(new Date('2026-12-07T00:00:00Z'))
    expect(await from(successor.key, '203.0.113.50')).toBe(200)
    auth.authenticator.close()
  })
})
