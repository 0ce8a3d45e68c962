import { randomUUID } from 'node:crypto'
import { describe, expect, it, vi } from 'vitest'
import { createAuthenticator } from './authenticator.js'
import type { AuthRequest } from './decision.js'
import { onKeyStoreChange } from './store-events.js'
import { MemoryKeyStore } from './store.js'
import { conformanceTenant } from './testing.js'

describe('onKeyStoreChange', () => {
  it('a listener that throws or rejects is a warning: the revocation stands, and every other listener hears it', async () => {
    const warnings = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
    const id = randomUUID()
    const store = new MemoryKeyStore()
    const tenant = conformanceTenant()
    store.putTenant(tenant)
    // Subscribed before the authenticator: a listener that stopped the loop would leave its cache stale.
    const stopThrowing = onKeyStoreChange(store, () => {
      throw new Error(`audit listener down ${id}`)
    })
    const stopRejecting = onKeyStoreChange(store, () => Promise.reject(new Error(`async listener down ${id}`)))
    const auth = createAuthenticator(store)
    const { key, keyId } = await auth.keys.create(tenant.tenantId, { label: 'agent' })
    const request: AuthRequest = { headers: { authorization: `Bearer ${key}` }, method: 'GET', url: '/' }
    expect((await auth.authenticate(request)).ok).toBe(true)
    await expect(auth.keys.revoke(tenant.tenantId, keyId)).resolves.toBe(true)
    expect(await auth.authenticate(request)).toMatchObject({ ok: false, status: 401 })
    await vi.waitFor(
      () =>
        expect(warnings.mock.calls.filter(([message]) => String(message).includes(id)).map(([m]) => m)).toEqual([
          `Saiku auth: the onKeyStoreChange listener hook threw or rejected, and was ignored: Error: audit listener down ${id}`,
          `Saiku auth: the onKeyStoreChange listener hook threw or rejected, and was ignored: Error: async listener down ${id}`,
        ]),
      { timeout: 10_000 },
    )
    stopThrowing()
    stopRejecting()
    auth.close()
  })
})
