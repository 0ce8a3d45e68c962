// An allowlist edit and a rotation's grace made in one process reach another's cache through the Redis change feed,
// as a revocation does: each process its own store object over the same data, the second caching keys for an hour.
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { describe, expect, it, vi } from 'vitest'
import { createAuthenticator, MemoryKeyStore, type KeyStore } from '@saiku/core'
import { createRedisChangeFeed } from '@saiku/redis'
import { redisUrl } from '@saiku/test-support/services'

const acme = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'team',
  connectionName: 'w',
  subscription: { status: 'active' as const },
}

describe.skipIf(redisUrl === undefined)('key policy through the Redis change feed', () => {
  it('drops a key whose allowlist or expiry changed elsewhere, and reads it afresh', async () => {
    const shared = new MemoryKeyStore({ tenants: [acme] })
    // The other process's store: the same data, another object, so only the feed can tell it.
    const other: KeyStore = {
      findKey: (keyId) => shared.findKey(keyId),
      findTenant: (tenantId) => shared.findTenant(tenantId),
      createKey: (record) => shared.createKey(record),
      listKeys: (tenantId) => shared.listKeys(tenantId),
      revokeKey: (keyId, at) => shared.revokeKey(keyId, at),
      updateKey: (keyId, changes) => shared.updateKey(keyId, changes),
    }
    const channel = `saiku:test:${randomUUID()}`
    const clients = Array.from({ length: 4 }, () => new Redis(redisUrl!))
    const feedA = await createRedisChangeFeed(shared, { publisher: clients[0]!, subscriber: clients[1]!, channel })
    const feedB = await createRedisChangeFeed(other, { publisher: clients[2]!, subscriber: clients[3]!, channel })
    const authA = createAuthenticator(shared)
    const authB = createAuthenticator(other, { cache: { ttlMs: 3_600_000 } })
    try {
      const { key, keyId } = await authA.keys.create('t-acme', { label: 'agent' })
      const from = (ip: string) => ({ headers: { authorization: `Bearer ${key}` }, method: 'GET', url: '/', ip })
      expect((await authB.authenticate(from('192.0.2.1'))).ok).toBe(true)

      await authA.keys.update('t-acme', keyId, { allowedAddresses: ['192.0.2.2'] })
      await vi.waitFor(
        async () => expect(await authB.authenticate(from('192.0.2.1'))).toMatchObject({ ok: false, status: 403 }),
        { timeout: 10_000, interval: 20 },
      )
      expect((await authB.authenticate(from('192.0.2.2'))).ok).toBe(true)

      await authA.keys.rotate('t-acme', keyId, { graceSeconds: 0 })
      await vi.waitFor(
        async () => expect(await authB.authenticate(from('192.0.2.2'))).toMatchObject({ ok: false, status: 401 }),
        { timeout: 10_000, interval: 20 },
      )
    } finally {
      authA.close()
      authB.close()
      await Promise.all([feedA.close(), feedB.close()])
      for (const client of clients) client.disconnect()
    }
  })
})
