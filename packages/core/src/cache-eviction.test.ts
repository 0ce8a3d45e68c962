// Regression: a tenant with no subscription presented its own keys once each (all 402), as many as the
// cache holds, and so evicted a neighbour's key in steady use from the verification cache; garbage with
// valid checksums (unknown key IDs) did the same through the negative cache. The cache now admits a
// newcomer only in place of an entry used less often lately, so keys presented once evict only each other.
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createAuthenticator, type Authenticator } from './authenticator.js'
import type { AuthRequest } from './decision.js'
import { KEY_ID_LENGTH, mintApiKey } from './keys.js'
import { createKeyManager } from './management.js'
import { MemoryKeyStore, type TenantRecord } from './store.js'
import { installFakeClock, type FakeClock } from './testing.js'

const T0 = Date.parse('2030-01-01T00:00:00.000Z')
const MAX_ENTRIES = 400

function tenant(slug: string, fields: Partial<TenantRecord> = {}): TenantRecord {
  return {
    tenantId: `00000000-0000-4000-8000-${slug.padEnd(12, '0').slice(0, 12)}`,
    tenantSlug: slug,
    tier: 'starter',
    connectionName: `${slug}-warehouse`,
    subscription: { status: 'active', trialEndsAt: null },
    ...fields,
  }
}

const victim = tenant('victim', { tier: 'enterprise', limits: { perMinute: 10_000, perHour: 100_000 } })
const freeloader = tenant('freeloader', { subscription: { status: 'none' } })

const request = (key: string, ip = '198.51.100.7'): AuthRequest => ({
  headers: { authorization: `Bearer ${key}` },
  method: 'GET',
  url: '/me/tenant',
  ip,
})

describe('the verification cache under a flood of keys presented once', () => {
  let clock: FakeClock
  let store: MemoryKeyStore
  let auth: Authenticator
  /** findKey calls, by key ID. */
  let lookups: Map<string, number>
  let victimKey: string
  let victimKeyId: string

  beforeEach(async () => {
    clock = installFakeClock(T0)
    store = new MemoryKeyStore({ tenants: [victim, freeloader] })
    lookups = new Map()
    const findKey = store.findKey.bind(store)
    store.findKey = (keyId) => {
      lookups.set(keyId, (lookups.get(keyId) ?? 0) + 1)
      return findKey(keyId)
    }
    auth = createAuthenticator(store, { cache: { maxEntries: MAX_ENTRIES, ttlMs: 600_000 } })
    const created = await createKeyManager(store).create(victim.tenantId, { label: 'production' })
    victimKey = created.key
    victimKeyId = created.keyId
    // In steady use: presented every second before the flood starts.
    for (let i = 0; i < 10; i++) {
      expect((await auth.authenticate(request(victimKey))).ok).toBe(true)
      clock.advance(1_000)
    }
    expect(lookups.get(victimKeyId)).toBe(1)
  })

  afterEach(() => {
    auth.close()
    clock.restore()
  })

  /** Three times the cache's bound presented once each; the victim's key presented after each bound's worth. */
  async function flood(present: (i: number) => Promise<void>): Promise<void> {
    for (let i = 0; i < 3 * MAX_ENTRIES; i++) {
      await present(i)
      clock.advance(1)
      if ((i + 1) % MAX_ENTRIES === 0) {
        const decision = await auth.authenticate(request(victimKey))
        expect(decision.ok).toBe(true)
      }
    }
  }

  it('another tenant’s own keys, each presented once (402), leave the victim’s key cached: no store lookup for it', async () => {
    const keys = createKeyManager(store)
    const oneShots: string[] = []
    for (let i = 0; i < 3 * MAX_ENTRIES; i++)
      oneShots.push((await keys.create(freeloader.tenantId, { label: `one-shot ${i}` })).key)
    let refused = 0
    await flood(async (i) => {
      const decision = await auth.authenticate(request(oneShots[i]!))
      if (!decision.ok && decision.status === 402) refused++
    })
    expect(refused).toBe(3 * MAX_ENTRIES)
    expect(lookups.get(victimKeyId)).toBe(1)
    expect(auth.stats().cachedKeys).toBeLessThanOrEqual(MAX_ENTRIES)
  })

  it('unknown key IDs with valid checksums, each presented once from its own address (401), leave the victim’s key cached', async () => {
    let unauthorized = 0
    await flood(async (i) => {
      const decision = await auth.authenticate(request(mintApiKey().key, `10.0.${i >> 8}.${i & 255}`))
      if (!decision.ok && decision.status === 401) unauthorized++
    })
    expect(unauthorized).toBe(3 * MAX_ENTRIES)
    expect(lookups.get(victimKeyId)).toBe(1)
    expect(auth.stats().cachedKeys).toBeLessThanOrEqual(MAX_ENTRIES)
  })

  it('an unknown key ID presented again and again from many addresses evicts nothing in use, and reaches the store only a few times', async () => {
    const garbage = mintApiKey().key
    let unauthorized = 0
    await flood(async (i) => {
      // Every other request repeats one unknown key ID; the rest are new ones.
      const key = i % 2 === 0 ? garbage : mintApiKey().key
      const decision = await auth.authenticate(request(key, `10.1.${i >> 8}.${i & 255}`))
      if (!decision.ok && decision.status === 401) unauthorized++
    })
    expect(unauthorized).toBe(3 * MAX_ENTRIES)
    // 600 presentations: answered from the cache but for the few times the flood's one-shots outbid it.
    expect(lookups.get(garbage.slice(8, 8 + KEY_ID_LENGTH))).toBeLessThanOrEqual(4)
    expect(lookups.get(victimKeyId)).toBe(1)
  })

  it('a key first used during the flood is cached after a few lookups, not starved by it', async () => {
    const newcomer = await createKeyManager(store).create(victim.tenantId, { label: 'new service' })
    let admitted = 0
    await flood(async (i) => {
      const decision = await auth.authenticate(request(mintApiKey().key, `10.2.${i >> 8}.${i & 255}`))
      expect(decision.ok).toBe(false)
      // The new key, once every 20 of the flood's keys (the window holds 4).
      if (i % 20 === 0 && (await auth.authenticate(request(newcomer.key))).ok) admitted++
    })
    expect(admitted).toBe(3 * (MAX_ENTRIES / 20))
    expect(lookups.get(newcomer.keyId)).toBeLessThanOrEqual(3)
    expect(lookups.get(victimKeyId)).toBe(1)
  })
})
