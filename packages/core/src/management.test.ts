import { describe, expect, it, vi } from 'vitest'
import { errorResponseFor } from './error-response.js'
import { SaikuHttpError, SaikuInputError, SaikuNotFoundError } from './errors.js'
import { digestApiKey } from './keys.js'
import { createKeyManager } from './management.js'
import { MemoryKeyStore } from './store.js'

const tenant = {
  tenantId: 't',
  tenantSlug: 'acme',
  tier: 'team',
  connectionName: 'w',
  subscription: { status: 'active' as const },
}

describe('createKeyManager', () => {
  it('returns the secret once and hands the store only its digest', async () => {
    const store = new MemoryKeyStore({ tenants: [tenant] })
    const createKey = vi.spyOn(store, 'createKey')
    const created = await createKeyManager(store).create('t', { label: 'production-agent' })
    expect(created.key).toMatch(/^sk_live_/)
    const [record] = createKey.mock.calls[0]!
    expect(JSON.stringify(record)).not.toContain(created.key.slice(21, 53))
    expect(record.secretDigest).toBe(digestApiKey(created.key))
    const listed = await store.listKeys('t')
    expect(JSON.stringify(listed)).not.toContain(created.key)
  })

  it('uses the pepper for digests when one is set', async () => {
    const store = new MemoryKeyStore({ tenants: [tenant] })
    const pepper = 'a-pepper-of-16-chars+'
    const created = await createKeyManager(store, { pepper }).create('t', { label: 'peppered' })
    expect((await store.findKey(created.keyId))?.secretDigest).toBe(digestApiKey(created.key, pepper))
  })

  it.each([
    [{ label: '' }, 'label', 'label must be a non-empty string.'],
    [{ label: 'x'.repeat(101) }, 'label', 'label must be at most 100 characters.'],
    [{ label: 'a\r\nSet-Cookie: x' }, 'label', 'label must not contain control or format characters.'],
    [
      { label: 'ok', permissions: ['Keys Write'] },
      'permissions',
      'permission "Keys Write" must look like "keys:write", "keys:*" or "*" (lower-case names joined by colons, at most 64 characters).',
    ],
    [{ label: 'ok', environment: 'staging' as never }, 'environment', 'environment must be "live" or "test".'],
    [{ label: 'ok', expiresAt: new Date(0) }, 'expiresAt', 'expiresAt must be a date in the future.'],
  ])('refuses %j with an input error naming the field and saying why', async (input, field, message) => {
    const store = new MemoryKeyStore({ tenants: [tenant] })
    const error = await createKeyManager(store)
      .create('t', input)
      .catch((thrown: unknown) => thrown)
    expect(error).toBeInstanceOf(SaikuInputError)
    expect(error).toMatchObject({ code: 'ERR_SAIKU_INVALID_INPUT', field, message })
    // Through the error handlers: the 400 it always was.
    expect(errorResponseFor(error)).toMatchObject({
      status: 400,
      code: 'invalid_request',
      body: JSON.stringify({ error: 'invalid_request', message }),
    })
  })

  it('throws no HTTP error: an unknown tenant is a not-found error, answered as the 404 it always was', async () => {
    const error = await createKeyManager(new MemoryKeyStore())
      .create('nobody', { label: 'x' })
      .catch((thrown: unknown) => thrown)
    expect(error).toBeInstanceOf(SaikuNotFoundError)
    expect(error).not.toBeInstanceOf(SaikuHttpError)
    expect(error).toMatchObject({ code: 'ERR_SAIKU_NOT_FOUND', resource: 'tenant', message: 'Tenant does not exist.' })
    expect(errorResponseFor(error)).toMatchObject({
      status: 404,
      body: '{"error":"not_found","message":"Tenant does not exist."}',
      report: false,
    })
  })

  it('rotates into a successor with the same label, permissions and expiry', async () => {
    const store = new MemoryKeyStore({ tenants: [tenant] })
    const keys = createKeyManager(store)
    const expiresAt = new Date(Date.now() + 86_400_000)
    const old = await keys.create('t', { label: 'agent', permissions: ['keys:read'], expiresAt })
    const successor = await keys.rotate('t', old.keyId)
    expect(successor).toMatchObject({ label: 'agent', permissions: ['keys:read'], expiresAt })
    expect(successor!.keyId).not.toBe(old.keyId)
    expect((await keys.list('t')).map((k) => k.keyId)).toEqual([old.keyId, successor!.keyId])
    expect(await keys.rotate('other-tenant', old.keyId)).toBeNull()
  })

  it('retries a key ID collision instead of overwriting', async () => {
    const store = new MemoryKeyStore({ tenants: [tenant] })
    const keys = createKeyManager(store)
    const existing = await keys.create('t', { label: 'first' })
    // The first insert collides: the store refuses it and already holds that ID.
    const createKey = vi.spyOn(store, 'createKey').mockRejectedValueOnce(new Error('duplicate key'))
    vi.spyOn(store, 'findKey').mockResolvedValueOnce(await store.findKey(existing.keyId))
    const second = await keys.create('t', { label: 'second' })
    expect(createKey).toHaveBeenCalledTimes(2)
    expect((await store.findKey(second.keyId))?.label).toBe('second')
    expect((await store.findKey(existing.keyId))?.label).toBe('first')
  })

  it('reports a store that refuses an insert for another reason as a store failure', async () => {
    const store = new MemoryKeyStore({ tenants: [tenant] })
    vi.spyOn(store, 'createKey').mockRejectedValue(new Error('disk full'))
    await expect(createKeyManager(store).create('t', { label: 'x' })).rejects.toMatchObject({
      name: 'SaikuStoreError',
      source: 'key_store',
    })
  })

  it('turns every store failure or hang into a SaikuStoreError, never a plain error', async () => {
    const store = new MemoryKeyStore({ tenants: [tenant] })
    const manager = createKeyManager(store, { timeoutMs: 50 })
    const { keyId } = await manager.create('t', { label: 'agent' })
    vi.spyOn(store, 'findTenant').mockRejectedValue(new Error('ECONNREFUSED'))
    vi.spyOn(store, 'listKeys').mockReturnValue(new Promise(() => {}))
    vi.spyOn(store, 'findKey').mockImplementation(() => {
      throw new Error('pool destroyed')
    })
    await expect(manager.create('t', { label: 'agent' })).rejects.toMatchObject({
      name: 'SaikuStoreError',
      source: 'key_store',
    })
    await expect(manager.list('t')).rejects.toMatchObject({ name: 'SaikuStoreError', timedOut: true })
    await expect(manager.revoke('t', keyId)).rejects.toMatchObject({ name: 'SaikuStoreError' })
    await expect(manager.rotate('t', keyId)).rejects.toMatchObject({ name: 'SaikuStoreError' })
  })
})
