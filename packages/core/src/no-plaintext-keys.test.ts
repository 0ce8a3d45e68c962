import { getHeapSnapshot } from 'node:v8'
import { describe, expect, it } from 'vitest'
import { createKeyManager, type KeyManager } from './management.js'
import { createAuthenticator, type Authenticator } from './authenticator.js'
import { MemoryKeyStore } from './store.js'

const tenant = {
  tenantId: 't-1',
  tenantSlug: 'acme',
  tier: 'team',
  connectionName: 'warehouse',
  subscription: { status: 'active' as const },
}

interface Presented {
  readonly keyId: string
  /** The key's secret part, as bytes: a Buffer's contents are not in a heap snapshot, so holding it here hides nothing. */
  readonly secret: Buffer
}

/**
 * Mints a key, presents it (and a wrong secret for its key ID) to the authenticator,
 * and keeps only its key ID and its secret's bytes: every string holding the key is
 * garbage once this returns.
 */
async function mintAndPresent(auth: Authenticator, keys: KeyManager, index: number): Promise<Presented> {
  const { key, keyId } = await keys.create('t-1', { label: `key ${index}` })
  const admitted = await auth.authenticate({
    headers: { authorization: `Bearer ${key}` },
    method: 'GET',
    url: '/me/tenant',
    ip: '10.0.0.1',
  })
  expect(admitted.ok).toBe(true)
  // Admitted again from the cache: the path every later request takes.
  expect(
    (
      await auth.authenticate({
        headers: { authorization: `Bearer ${key}` },
        method: 'GET',
        url: '/me/tenant',
        ip: '10.0.0.1',
      })
    ).ok,
  ).toBe(true)
  return { keyId, secret: Buffer.from(key.slice(21, 53), 'latin1') }
}

/** Whether any string in a heap snapshot of this process contains each needle, read as it streams. */
async function inHeap(needles: () => string[]): Promise<boolean[]> {
  // The snapshot is taken (after a full garbage collection) by this call, before any needle exists.
  const snapshot = getHeapSnapshot()
  const wanted = needles()
  const found = wanted.map(() => false)
  const overlap = Math.max(...wanted.map((needle) => needle.length))
  let tail = ''
  for await (const chunk of snapshot) {
    const text = tail + (chunk as Buffer).toString('latin1')
    for (let i = 0; i < wanted.length; i++) if (!found[i] && text.includes(wanted[i]!)) found[i] = true
    tail = text.slice(-overlap)
  }
  return found
}

describe('what the process keeps of the keys it verified', () => {
  it('keeps their key IDs but never a key or its secret, in the cache or anywhere else in the heap', async () => {
    const store = new MemoryKeyStore({ tenants: [tenant] })
    const auth = createAuthenticator(store, { tiers: { team: { perMinute: 1_000, perHour: 10_000 } } })
    const keys = createKeyManager(store)
    const presented: Presented[] = []
    for (let i = 0; i < 20; i++) presented.push(await mintAndPresent(auth, keys, i))
    expect(auth.stats().cachedKeys).toBe(20)

    const found = await inHeap(() => [
      ...presented.map((p) => p.keyId),
      ...presented.map((p) => p.secret.toString('latin1')),
    ])
    const keyIdsFound = found.slice(0, presented.length)
    const secretsFound = found.slice(presented.length)
    // The search works: the cache holds every key ID.
    expect(keyIdsFound).toEqual(presented.map(() => true))
    expect(secretsFound).toEqual(presented.map(() => false))
    auth.close()
  }, 60_000)
})
