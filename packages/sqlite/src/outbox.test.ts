import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { createKeyManager, SaikuInputError } from '@saiku/core'
import { newEventId } from '@saiku/core/store'
import { conformanceTenant } from '@saiku/core/testing'
import { SqliteKeyStore } from './index.js'

const dir = mkdtempSync(join(tmpdir(), 'saiku-sqlite-outbox-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let files = 0
const freshFile = () => join(dir, `store-${files++}.db`)

interface Row {
  event_id: string
  tenant_id: string
  type: string
  data: string
}
const events = (store: SqliteKeyStore) =>
  store.db
    .prepare<[], Row>('SELECT event_id, tenant_id, type, data FROM saiku_outbox ORDER BY id')
    .all()
    .map((row) => ({ id: row.event_id, tenantId: row.tenant_id, type: row.type, data: JSON.parse(row.data) }))

async function storeWithTenant(outbox = true) {
  const store = new SqliteKeyStore(freshFile(), { watchIntervalMs: 0, outbox })
  const tenant = conformanceTenant()
  await store.putTenant(tenant)
  return { store, tenant, keys: createKeyManager(store) }
}

describe('SqliteKeyStore outbox', () => {
  it('writes key.created, key.rotated (naming the key replaced), key.updated and key.revoked with the key writes', async () => {
    const { store, tenant, keys } = await storeWithTenant()
    const first = await keys.create(tenant.tenantId, { label: 'ci' })
    const second = await keys.rotate(tenant.tenantId, first.keyId, { graceSeconds: 60 })
    await keys.revoke(tenant.tenantId, first.keyId)
    expect(await keys.revoke(tenant.tenantId, first.keyId)).toBe(false) // no second event
    const written = events(store)
    expect(written.map((event) => event.type)).toEqual(['key.created', 'key.rotated', 'key.updated', 'key.revoked'])
    expect(written.every((event) => event.tenantId === tenant.tenantId)).toBe(true)
    expect(written[0]!.data).toEqual({ keyId: first.keyId, label: 'ci', environment: 'live', expiresAt: null })
    expect(written[1]!.data).toMatchObject({ keyId: second!.keyId, previousKeyId: first.keyId })
    expect(written[2]!.data).toMatchObject({ keyId: first.keyId, changed: ['expiresAt'] })
    expect(written[3]!.data).toMatchObject({ keyId: first.keyId, label: 'ci' })
    expect(new Set(written.map((event) => event.id)).size).toBe(4)
    // Never a secret or its digest.
    const text = JSON.stringify(written)
    expect(text).not.toContain(first.key)
    expect(text).not.toContain((await store.findKey(first.keyId))!.secretDigest)
    store.close()
  })

  it('writes the key and its event in one transaction: an event that cannot be written undoes the revocation', async () => {
    const { store, tenant, keys } = await storeWithTenant()
    const key = await keys.create(tenant.tenantId, { label: 'leaky' })
    const [created] = events(store)
    const clash = { id: created!.id, type: 'key.leaked', tenantId: tenant.tenantId, occurredAt: new Date(), data: {} }
    await expect(store.revokeKey(key.keyId, new Date(), [clash])).rejects.toThrow(/UNIQUE/)
    expect((await store.findKey(key.keyId))!.revokedAt).toBeNull()
    expect(events(store).map((event) => event.type)).toEqual(['key.created'])

    const leaked = { id: newEventId(), type: 'key.leaked', tenantId: tenant.tenantId, occurredAt: new Date(), data: {} }
    expect(await store.revokeKey(key.keyId, new Date(), [leaked])).toBe(true)
    expect(events(store).map((event) => event.type)).toEqual(['key.created', 'key.revoked', 'key.leaked'])
    // Given to a revocation that changes nothing, the events are not written.
    expect(await store.revokeKey(key.keyId, new Date(), [{ ...leaked, id: newEventId() }])).toBe(false)
    expect(events(store)).toHaveLength(3)
    store.close()
  })

  it('writes no event for a key write that fails, and none at all with the outbox off', async () => {
    const { store, tenant, keys } = await storeWithTenant()
    const key = await keys.create(tenant.tenantId, { label: 'once' })
    const record = (await store.findKey(key.keyId))!
    await expect(store.createKey(record)).rejects.toThrow()
    expect(events(store)).toHaveLength(1)
    store.close()

    const off = await storeWithTenant(false)
    const other = await off.keys.create(off.tenant.tenantId, { label: 'quiet' })
    await off.keys.revoke(off.tenant.tenantId, other.keyId)
    expect(events(off.store)).toEqual([])
    off.store.close()
  })

  it('appends events of its own and refuses one that is malformed, writing none of the batch', async () => {
    const { store, tenant } = await storeWithTenant()
    const good = { id: newEventId(), type: 'trial.ending', tenantId: tenant.tenantId, occurredAt: new Date(), data: {} }
    await expect(store.appendEvents([good, { ...good, id: newEventId(), type: 'Not A Type' }])).rejects.toThrow(
      SaikuInputError,
    )
    expect(events(store)).toEqual([])
    await store.appendEvents([good])
    expect(events(store).map((event) => event.type)).toEqual(['trial.ending'])
    expect(() => new SqliteKeyStore(freshFile(), { outbox: 'yes' as unknown as boolean })).toThrow(
      'outbox: expected true or false, got "yes"',
    )
    store.close()
  })
})
