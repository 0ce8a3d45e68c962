import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createKeyManager, SaikuInputError } from '@saiku/core'
import { newEventId } from '@saiku/core/store'
import { conformanceTenant } from '@saiku/core/testing'
import { postgresUrl } from '@saiku/test-support/services'
import { PostgresKeyStore } from './index.js'

describe.skipIf(postgresUrl === undefined)('PostgresKeyStore outbox', () => {
  let pool: pg.Pool
  const schemas: string[] = []
  beforeAll(() => {
    pool = new pg.Pool({ connectionString: postgresUrl, max: 6 })
  })
  afterAll(async () => {
    for (const schema of schemas) await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await pool.end()
  })

  async function storeWithTenant(outbox = true) {
    const schema = `saiku_test_${randomUUID().replaceAll('-', '').slice(0, 16)}`
    schemas.push(schema)
    const store = new PostgresKeyStore({ pool, schema, listen: false, outbox })
    const tenant = conformanceTenant()
    await store.putTenant(tenant)
    const events = async () =>
      (
        await pool.query<{ event_id: string; tenant_id: string; type: string; data: Record<string, unknown> }>(
          `SELECT event_id, tenant_id, type, data FROM "${schema}".saiku_outbox ORDER BY id`,
        )
      ).rows.map((row) => ({ id: row.event_id, tenantId: row.tenant_id, type: row.type, data: row.data }))
    return { store, tenant, keys: createKeyManager(store), events }
  }

  it('writes key.created, key.rotated (naming the key replaced), key.updated and key.revoked with the key writes', async () => {
    const { store, tenant, keys, events } = await storeWithTenant()
    const first = await keys.create(tenant.tenantId, { label: 'ci' })
    const second = await keys.rotate(tenant.tenantId, first.keyId, { graceSeconds: 60 })
    await keys.revoke(tenant.tenantId, first.keyId)
    expect(await keys.revoke(tenant.tenantId, first.keyId)).toBe(false)
    const written = await events()
    expect(written.map((event) => event.type)).toEqual(['key.created', 'key.rotated', 'key.updated', 'key.revoked'])
    expect(written.every((event) => event.tenantId === tenant.tenantId)).toBe(true)
    expect(written[0]!.data).toEqual({ keyId: first.keyId, label: 'ci', environment: 'live', expiresAt: null })
    expect(written[1]!.data).toMatchObject({ keyId: second!.keyId, previousKeyId: first.keyId })
    expect(written[2]!.data).toMatchObject({ keyId: first.keyId, changed: ['expiresAt'] })
    expect(written[3]!.data).toMatchObject({ keyId: first.keyId, label: 'ci' })
    const text = JSON.stringify(written)
    expect(text).not.toContain(first.key)
    expect(text).not.toContain((await store.findKey(first.keyId))!.secretDigest)
    await store.close()
  })

  it('writes the key and its event in one transaction: an event that cannot be written undoes the revocation', async () => {
    const { store, tenant, keys, events } = await storeWithTenant()
    const key = await keys.create(tenant.tenantId, { label: 'leaky' })
    const [created] = await events()
    const clash = { id: created!.id, type: 'key.leaked', tenantId: tenant.tenantId, occurredAt: new Date(), data: {} }
    await expect(store.revokeKey(key.keyId, new Date(), [clash])).rejects.toThrow(/duplicate key/)
    expect((await store.findKey(key.keyId))!.revokedAt).toBeNull()
    expect((await events()).map((event) => event.type)).toEqual(['key.created'])

    const leaked = { id: newEventId(), type: 'key.leaked', tenantId: tenant.tenantId, occurredAt: new Date(), data: {} }
    expect(await store.revokeKey(key.keyId, new Date(), [leaked])).toBe(true)
    expect((await events()).map((event) => event.type)).toEqual(['key.created', 'key.revoked', 'key.leaked'])
    expect(await store.revokeKey(key.keyId, new Date(), [{ ...leaked, id: newEventId() }])).toBe(false)
    expect(await events()).toHaveLength(3)
    await store.close()
  })

  it('writes no event for a key write that fails, and none at all with the outbox off', async () => {
    const { store, tenant, keys, events } = await storeWithTenant()
    const key = await keys.create(tenant.tenantId, { label: 'once' })
    await expect(store.createKey((await store.findKey(key.keyId))!)).rejects.toThrow()
    expect(await events()).toHaveLength(1)
    await store.close()

    const off = await storeWithTenant(false)
    const other = await off.keys.create(off.tenant.tenantId, { label: 'quiet' })
    await off.keys.revoke(off.tenant.tenantId, other.keyId)
    expect(await off.events()).toEqual([])
    await off.store.close()
  })

  it('appends events of its own and refuses one that is malformed, writing none of the batch', async () => {
    const { store, tenant, events } = await storeWithTenant()
    const good = { id: newEventId(), type: 'trial.ending', tenantId: tenant.tenantId, occurredAt: new Date(), data: {} }
    await expect(store.appendEvents([good, { ...good, id: newEventId(), type: 'Not A Type' }])).rejects.toThrow(
      SaikuInputError,
    )
    expect(await events()).toEqual([])
    await store.appendEvents([good])
    expect((await events()).map((event) => event.type)).toEqual(['trial.ending'])
    expect(() => new PostgresKeyStore({ pool, listen: false, outbox: 1 as unknown as boolean })).toThrow(
      'outbox: expected true or false, got 1',
    )
    await store.close()
  })
})
