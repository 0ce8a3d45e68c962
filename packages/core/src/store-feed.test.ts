import { afterEach, describe, expect, it } from 'vitest'
import { createAuthenticator } from './authenticator.js'
import { createKeyManager } from './management.js'
import { MemoryKeyStore, type KeyStore } from './store.js'
import { announceKeyStoreFeed, keyStoreTrustCapMs, onKeyStoreChange, type KeyChange } from './store-events.js'
import { installFakeClock, type FakeClock } from './testing.js'

const acme = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'w',
  subscription: { status: 'active' as const },
}

/**
 * A store read by the authenticator whose writes go through another object, as writes made by
 * another process do: nothing is announced to the authenticator, only a change feed would tell it.
 */
async function storeWrittenElsewhere() {
  const elsewhere = new MemoryKeyStore({ tenants: [acme] })
  let reads = 0
  const store: KeyStore = {
    findKey: (keyId) => {
      reads++
      return elsewhere.findKey(keyId)
    },
    findTenant: (tenantId) => elsewhere.findTenant(tenantId),
    createKey: (record) => elsewhere.createKey(record),
    listKeys: (tenantId) => elsewhere.listKeys(tenantId),
    revokeKey: (keyId, at) => elsewhere.revokeKey(keyId, at),
  }
  const manager = createKeyManager(elsewhere)
  const auth = createAuthenticator(store, { cache: { ttlMs: 120_000 }, failedAuth: false })
  const status = async (key: string) => {
    const decision = await auth.authenticate({
      headers: { authorization: `Bearer ${key}` },
      method: 'GET',
      url: '/me/tenant',
    })
    return decision.ok ? 200 : decision.status
  }
  return { store, elsewhere, manager, auth, status, reads: () => reads }
}

describe('a change feed that stops hearing (announceKeyStoreFeed)', () => {
  let clock: FakeClock | undefined
  afterEach(() => clock?.restore())

  it('clears every cache when it goes down, trusts what is read meanwhile for maxAgeMs only, and clears again when it hears again', async () => {
    clock = installFakeClock(Date.UTC(2026, 0, 1))
    const { store, manager, auth, status, reads } = await storeWrittenElsewhere()
    const feed = {}
    const before = await manager.create('t-acme', { label: 'before' })
    expect(await status(before.key)).toBe(200)

    // Revoked elsewhere while the feed was stalled, unheard: the key is cached for two minutes.
    await manager.revoke('t-acme', before.keyId)
    clock.advance(1_000)
    expect(await status(before.key)).toBe(200)
    announceKeyStoreFeed(store, feed, { live: false, maxAgeMs: 5_000 })
    expect(await status(before.key)).toBe(401)

    // Read while the feed is down: trusted for 5 s, not 120 s.
    const during = await manager.create('t-acme', { label: 'during' })
    expect(await status(during.key)).toBe(200)
    await manager.revoke('t-acme', during.keyId)
    clock.advance(4_000)
    expect(await status(during.key)).toBe(200)
    clock.advance(1_001)
    expect(await status(during.key)).toBe(401)

    // Heard again: what was read before is forgotten once more, and what is read now is trusted for cache.ttlMs.
    const again = await manager.create('t-acme', { label: 'again' })
    expect(await status(again.key)).toBe(200)
    await manager.revoke('t-acme', again.keyId)
    announceKeyStoreFeed(store, feed, { live: true })
    expect(await status(again.key)).toBe(401)
    const after = await manager.create('t-acme', { label: 'after' })
    expect(await status(after.key)).toBe(200)
    // Past the cap of the outage, before refresh-ahead (half the TTL): no store read.
    const readsAfter = reads()
    clock.advance(30_000)
    expect(await status(after.key)).toBe(200)
    expect(reads()).toBe(readsAfter)
    auth.close()
  })

  it('caps the tenant cache the same way: a subscription ended elsewhere applies within maxAgeMs', async () => {
    clock = installFakeClock(Date.UTC(2026, 0, 1))
    const { store, elsewhere, manager, auth, status } = await storeWrittenElsewhere()
    const { key } = await manager.create('t-acme', { label: 'agent' })
    announceKeyStoreFeed(store, {}, { live: false, maxAgeMs: 2_000 })
    expect(await status(key)).toBe(200)
    elsewhere.putTenant({ ...acme, subscription: { status: 'canceled' } })
    clock.advance(2_001)
    expect(await status(key)).toBe(402)
    auth.close()
  })

  it('announces a clear only when a feed changes state, and stays capped while any feed of the store is down', () => {
    const store = {}
    const heard: KeyChange[] = []
    onKeyStoreChange(store, (change) => heard.push(change))
    const listen = {}
    const relay = {}
    announceKeyStoreFeed(store, listen, { live: true })
    expect(heard).toEqual([])
    expect(keyStoreTrustCapMs(store)).toBeUndefined()

    announceKeyStoreFeed(store, listen, { live: false, maxAgeMs: 5_000 })
    announceKeyStoreFeed(store, listen, { live: false, maxAgeMs: 5_000 })
    announceKeyStoreFeed(store, relay, { live: false, maxAgeMs: 8_000 })
    expect(heard).toEqual([{ kind: 'all' }, { kind: 'all' }])
    expect(keyStoreTrustCapMs(store)).toBe(5_000)

    // A smaller bound for a feed already down: what was read under the larger one is forgotten.
    announceKeyStoreFeed(store, relay, { live: false, maxAgeMs: 1_000 })
    expect(heard).toHaveLength(3)
    expect(keyStoreTrustCapMs(store)).toBe(1_000)

    announceKeyStoreFeed(store, relay, { live: true })
    expect(keyStoreTrustCapMs(store)).toBe(5_000)
    announceKeyStoreFeed(store, listen, { live: true })
    expect(keyStoreTrustCapMs(store)).toBeUndefined()
    expect(heard).toHaveLength(5)
    expect(() => announceKeyStoreFeed(store, listen, { live: false, maxAgeMs: -1 })).toThrow(RangeError)
  })
})
