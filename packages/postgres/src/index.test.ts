import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { createAuthenticator, createKeyManager, SaikuConfigError } from '@saiku/core'
import { onKeyStoreChange, type KeyChange } from '@saiku/core/store'
import { conformanceTenant, describeKeyStoreConformance } from '@saiku/core/testing'
import { postgresUrl } from '@saiku/test-support/services'
import { MIGRATIONS, PostgresKeyStore } from './index.js'

const schemas: string[] = []
const freshSchema = () => {
  const schema = `saiku_test_${randomUUID().replaceAll('-', '').slice(0, 16)}`
  schemas.push(schema)
  return schema
}

describe('PostgresKeyStore and ?schema=NAME in the connection string (no server needed)', () => {
  const poolFor = (connectionString: string) => new pg.Pool({ connectionString })

  it('takes the schema from the connection string when the option is not given', () => {
    expect(new PostgresKeyStore({ pool: poolFor('postgres://u:p@db.invalid/app?schema=tenants_a') }).schema).toBe(
      'tenants_a',
    )
    expect(new PostgresKeyStore({ pool: poolFor('postgres://u:p@db.invalid/app') }).schema).toBe('public')
  })

  it('refuses a schema option that contradicts the connection string', () => {
    const pool = poolFor('postgres://u:p@db.invalid/app?schema=tenants_a')
    expect(() => new PostgresKeyStore({ pool, schema: 'tenants_b' })).toThrow(
      'schema: expected the schema of the pool\'s connection string ("tenants_a") or none, got "tenants_b"',
    )
    expect(new PostgresKeyStore({ pool, schema: 'tenants_a' }).schema).toBe('tenants_a')
  })

  it('refuses a ?schema= that is not a plain SQL identifier', () => {
    expect(() => new PostgresKeyStore({ pool: poolFor('postgres://u:p@db.invalid/app?schema=Bad-Name') })).toThrow(
      SaikuConfigError,
    )
    expect(() => new PostgresKeyStore({ pool: poolFor('postgres://u:p@db.invalid/app?schema=Bad-Name') })).toThrow(
      'pool connection string ?schema: expected a lower-case SQL identifier of at most 41 characters, got "Bad-Name"',
    )
  })
})

describe('PostgresKeyStore LISTEN options (no server needed)', () => {
  const pool = new pg.Pool({ connectionString: 'postgres://u:p@db.invalid/app' })

  it('refuses a listenTimeoutMs that is not a positive integer', () => {
    expect(() => new PostgresKeyStore({ pool, listenTimeoutMs: 0 })).toThrow(
      'listenTimeoutMs: expected a positive integer, got 0',
    )
  })

  it('refuses, when listening, a pool that cannot open a connection of its own', () => {
    const { Client: _, ...notPg } = pool as unknown as Record<string, unknown>
    const fake = notPg as unknown as pg.Pool
    expect(() => new PostgresKeyStore({ pool, listenPool: fake })).toThrow(
      /^listenPool: expected a pg Pool \(its Client opens the LISTEN connection\)/,
    )
    expect(new PostgresKeyStore({ pool: fake, listen: false }).listening).toBe(false)
  })
})

describe.skipIf(postgresUrl === undefined)('PostgresKeyStore', () => {
  let pool: pg.Pool
  beforeAll(() => {
    pool = new pg.Pool({ connectionString: postgresUrl, max: 10 })
  })
  afterAll(async () => {
    for (const schema of schemas) await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await pool.end()
  })

  describeKeyStoreConformance('PostgresKeyStore', async () => {
    const store = new PostgresKeyStore({ pool, schema: freshSchema(), listen: false })
    return { store, addTenant: (tenant) => store.putTenant(tenant), close: () => store.close() }
  })

  it('puts its tables in the schema of DATABASE_URL=…?schema=NAME, as documented', async () => {
    const schema = freshSchema()
    const url = new URL(postgresUrl!)
    url.searchParams.set('schema', schema)
    const schemaPool = new pg.Pool({ connectionString: url.toString(), max: 2 })
    try {
      const store = new PostgresKeyStore({ pool: schemaPool, listen: false })
      expect(store.schema).toBe(schema)
      await store.putTenant(conformanceTenant({ tenantSlug: 'in-its-schema' }))
      const { rows } = await pool.query(`SELECT tenant_slug FROM "${schema}".saiku_tenants`)
      expect(rows).toEqual([{ tenant_slug: 'in-its-schema' }])
      await store.close()
    } finally {
      await schemaPool.end()
    }
  })

  it('migrates once, even when several processes start together', async () => {
    const schema = freshSchema()
    const stores = Array.from({ length: 4 }, () => new PostgresKeyStore({ pool, schema, listen: false }))
    const latest = MIGRATIONS.length
    expect(await Promise.all(stores.map((store) => store.migrate()))).toEqual([latest, latest, latest, latest])
    const { rows } = await pool.query(`SELECT version FROM "${schema}".saiku_schema_version`)
    expect(rows).toEqual([{ version: latest }])
    const indexes = await pool.query(
      `SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'saiku_api_keys'`,
      [schema],
    )
    expect(indexes.rows.map((r) => r.indexdef).join('\n')).toMatch(/UNIQUE INDEX .* \(secret_digest\)/)
  })

  it('upgrades a schema made before usage history, and two stores on one table add their buckets up', async () => {
    const schema = freshSchema()
    const tenant = conformanceTenant()
    const previous = MIGRATIONS.length - 1
    await pool.query(`CREATE SCHEMA "${schema}"`)
    await pool.query(`CREATE TABLE "${schema}".saiku_schema_version (version integer NOT NULL)`)
    await pool.query(`INSERT INTO "${schema}".saiku_schema_version VALUES ($1)`, [previous])
    for (const step of MIGRATIONS.slice(0, previous)) await pool.query(step(`"${schema}"`))
    const one = new PostgresKeyStore({ pool, schema, listen: false })
    const two = new PostgresKeyStore({ pool, schema, listen: false })
    expect(await one.migrate()).toBe(MIGRATIONS.length)
    const bucket = (keyId: string | null, admitted: number) => ({
      tenantId: tenant.tenantId,
      keyId,
      hourStartMs: 7_200_000,
      admitted,
      rateLimited: 0,
      quotaExceeded: 1,
      forbidden: 0,
      paymentRequired: 0,
    })
    // Many writers at once over the same rows, in both orders: each one's counts added, no deadlock.
    await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        (i % 2 === 0 ? one : two).addUsage(
          i % 2 === 0 ? [bucket('AAAAAAAAAAAA', 1), bucket(null, 1)] : [bucket(null, 1), bucket('AAAAAAAAAAAA', 1)],
        ),
      ),
    )
    expect(await two.readUsage({ tenantId: tenant.tenantId, fromMs: 0, toMs: 10_800_000 })).toEqual([
      { ...bucket(null, 8), quotaExceeded: 8 },
      { ...bucket('AAAAAAAAAAAA', 8), quotaExceeded: 8 },
    ])
    await one.close()
    await two.close()
  })

  it("upgrades a schema made before tenants' own day and month quotas: its tenants read back as they were", async () => {
    const schema = freshSchema()
    const tenant = conformanceTenant({ tier: 'enterprise', limits: { perMinute: 7, perHour: 70 } })
    // Every step before the quota columns, as the previous release left the schema.
    const previous = 3
    await pool.query(`CREATE SCHEMA "${schema}"`)
    await pool.query(`CREATE TABLE "${schema}".saiku_schema_version (version integer NOT NULL)`)
    await pool.query(`INSERT INTO "${schema}".saiku_schema_version VALUES ($1)`, [previous])
    for (const step of MIGRATIONS.slice(0, previous)) await pool.query(step(`"${schema}"`))
    await pool.query(
      `INSERT INTO "${schema}".saiku_tenants (tenant_id, tenant_slug, tier, connection_name, subscription_status, trial_ends_at, limit_per_minute, limit_per_hour)
       VALUES ($1, $2, 'enterprise', $3, 'active', NULL, 7, 70)`,
      [tenant.tenantId, tenant.tenantSlug, tenant.connectionName],
    )

    const store = new PostgresKeyStore({ pool, schema, listen: false })
    expect(await store.migrate()).toBe(MIGRATIONS.length)
    expect((await store.findTenant(tenant.tenantId))?.limits).toStrictEqual({ perMinute: 7, perHour: 70 })
    await store.putTenant({ ...tenant, limits: { perMinute: 7, perHour: 70, perDay: 700, perMonth: 7_000 } })
    expect((await store.findTenantBySlug(tenant.tenantSlug))?.limits).toEqual({
      perMinute: 7,
      perHour: 70,
      perDay: 700,
      perMonth: 7_000,
    })
    await expect(
      pool.query(`UPDATE "${schema}".saiku_tenants SET limit_per_month = 0 WHERE tenant_id = $1`, [tenant.tenantId]),
    ).rejects.toThrow(/check constraint/)
    await store.close()
  })

  it('tells another process of a revocation at once (LISTEN/NOTIFY), not after the cache TTL', async () => {
    const schema = freshSchema()
    const a = new PostgresKeyStore({ pool, schema })
    const b = new PostgresKeyStore({ pool, schema })
    await Promise.all([a.ready(), b.ready()])
    const tenant = conformanceTenant()
    await a.putTenant(tenant)
    const created = await createKeyManager(a).create(tenant.tenantId, { label: 'agent' })
    const authB = createAuthenticator(b, { cache: { ttlMs: 3_600_000 } })
    const request = { headers: { authorization: `Bearer ${created.key}` }, method: 'GET', url: '/me/tenant' }
    expect((await authB.authenticate(request)).ok).toBe(true)

    const heard: KeyChange[] = []
    const stop = onKeyStoreChange(b, (change) => heard.push(change))
    await createKeyManager(a).revoke(tenant.tenantId, created.keyId)
    await vi.waitFor(() => expect(heard).toContainEqual({ kind: 'key', keyId: created.keyId }), {
      timeout: 2_000,
      interval: 10,
    })
    expect(await authB.authenticate(request)).toMatchObject({ ok: false, status: 401 })
    stop()
    authB.close()
    await Promise.all([a.close(), b.close()])
  })

  it("tells another process of an allowlist change and a rotation's grace at once (LISTEN/NOTIFY)", async () => {
    const schema = freshSchema()
    const a = new PostgresKeyStore({ pool, schema })
    const b = new PostgresKeyStore({ pool, schema })
    await Promise.all([a.ready(), b.ready()])
    const tenant = conformanceTenant()
    await a.putTenant(tenant)
    const created = await createKeyManager(a).create(tenant.tenantId, { label: 'agent' })
    const authB = createAuthenticator(b, { cache: { ttlMs: 3_600_000 } })
    const from = (ip: string) => ({
      headers: { authorization: `Bearer ${created.key}` },
      method: 'GET',
      url: '/me/tenant',
      ip,
    })
    expect((await authB.authenticate(from('192.0.2.1'))).ok).toBe(true)

    const heard: KeyChange[] = []
    const stop = onKeyStoreChange(b, (change) => heard.push(change))
    await createKeyManager(a).update(tenant.tenantId, created.keyId, { allowedAddresses: ['192.0.2.2'] })
    await vi.waitFor(() => expect(heard).toContainEqual({ kind: 'key', keyId: created.keyId }), {
      timeout: 10_000,
      interval: 10,
    })
    expect(await authB.authenticate(from('192.0.2.1'))).toMatchObject({ ok: false, status: 403 })
    expect((await authB.authenticate(from('192.0.2.2'))).ok).toBe(true)

    heard.length = 0
    await createKeyManager(a).rotate(tenant.tenantId, created.keyId, { graceSeconds: 0 })
    await vi.waitFor(() => expect(heard).toContainEqual({ kind: 'key', keyId: created.keyId }), {
      timeout: 10_000,
      interval: 10,
    })
    expect(await authB.authenticate(from('192.0.2.2'))).toMatchObject({ ok: false, status: 401 })
    stop()
    authB.close()
    await Promise.all([a.close(), b.close()])
  })

  it('listens again after losing its connection, and forgets what it may have missed', async () => {
    const schema = freshSchema()
    const a = new PostgresKeyStore({ pool, schema })
    const b = new PostgresKeyStore({ pool, schema })
    await Promise.all([a.ready(), b.ready()])
    const heard: KeyChange[] = []
    const stop = onKeyStoreChange(b, (change) => heard.push(change))
    const { rowCount } = await pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1`, [
      `LISTEN "${b.channel}"`,
    ])
    expect(rowCount).toBe(2)
    // Forgotten once when the connection is lost, and once more when listening again.
    await vi.waitFor(() => expect(heard).toEqual([{ kind: 'all' }, { kind: 'all' }]), { timeout: 5_000, interval: 20 })
    expect(b.listening).toBe(true)
    const tenant = conformanceTenant()
    await a.putTenant(tenant)
    await vi.waitFor(() => expect(heard).toContainEqual({ kind: 'tenant', tenantId: tenant.tenantId }), {
      timeout: 5_000,
      interval: 20,
    })
    stop()
    await Promise.all([a.close(), b.close()])
  })

  it('gathers lastUsedAt writes into one statement', async () => {
    const store = new PostgresKeyStore({ pool, schema: freshSchema(), listen: false, lastUsedFlushMs: 60_000 })
    const tenant = conformanceTenant()
    await store.putTenant(tenant)
    const keys = await Promise.all(
      Array.from({ length: 5 }, (_, i) => createKeyManager(store).create(tenant.tenantId, { label: `k${i}` })),
    )
    const query = vi.spyOn(pool, 'query')
    for (let round = 0; round < 20; round++)
      for (const key of keys) await store.recordKeyUse(key.keyId, new Date(Date.now() + round))
    expect(query).not.toHaveBeenCalled()
    expect(await store.flushKeyUses()).toBe(5)
    expect(query).toHaveBeenCalledTimes(1)
    const listed = await store.listKeys(tenant.tenantId)
    expect(listed.every((key) => key.lastUsedAt instanceof Date)).toBe(true)
    await store.close()
  })

  it('starts one trial from two pools, however many ask at once', async () => {
    const schema = freshSchema()
    const other = new pg.Pool({ connectionString: postgresUrl, max: 5 })
    const stores = [
      new PostgresKeyStore({ pool, schema, listen: false }),
      new PostgresKeyStore({ pool: other, schema, listen: false }),
    ]
    const tenant = conformanceTenant({ subscription: { status: 'none', trialEndsAt: null } })
    await stores[0]!.putTenant(tenant)
    const trial = { status: 'trialing' as const, trialEndsAt: new Date(Date.now() + 14 * 86_400_000) }
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        stores[i % 2]!.replaceSubscription(tenant.tenantId, tenant.subscription, trial),
      ),
    )
    expect(results.filter(Boolean)).toHaveLength(1)
    expect((await stores[1]!.findTenant(tenant.tenantId))?.subscription).toEqual(trial)
    await Promise.all(stores.map((store) => store.close()))
    await other.end()
  })

  it('makes one plan change from two pools, and keeps the billing fields', async () => {
    const schema = freshSchema()
    const other = new pg.Pool({ connectionString: postgresUrl, max: 5 })
    const stores = [
      new PostgresKeyStore({ pool, schema, listen: false }),
      new PostgresKeyStore({ pool: other, schema, listen: false }),
    ]
    const billingAnchor = new Date('2028-01-31T10:00:00.000Z')
    const tenant = conformanceTenant({ subscription: { status: 'active', trialEndsAt: null, billingAnchor } })
    await stores[0]!.putTenant(tenant)
    const scheduledChangeAt = new Date('2028-02-29T00:00:00.000Z')
    const downgrade = { ...tenant.subscription, scheduledTier: 'starter', scheduledChangeAt }
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        i % 4 === 0
          ? stores[i % 2]!.replaceSubscription(tenant.tenantId, tenant.subscription, tenant.subscription, {
              expectedTier: 'team',
              tier: 'business',
            })
          : // Conditioned on the tier read, as a billing route does: an upgrade changes only the tier.
            stores[i % 2]!.replaceSubscription(tenant.tenantId, tenant.subscription, downgrade, {
              expectedTier: 'team',
              tier: 'team',
            }),
      ),
    )
    expect(results.filter(Boolean)).toHaveLength(1)
    const found = await stores[1]!.findTenant(tenant.tenantId)
    if (results.findIndex(Boolean) % 4 === 0)
      expect(found).toMatchObject({ tier: 'business', subscription: tenant.subscription })
    else expect(found).toMatchObject({ tier: 'team', subscription: downgrade })
    expect(found?.subscription.billingAnchor?.getTime()).toBe(billingAnchor.getTime())
    await Promise.all(stores.map((store) => store.close()))
    await other.end()
  })

  it('keeps the last uses of a failed flush, reports the failure, and writes them on the next flush', async () => {
    const schema = freshSchema()
    // Statements give up after 200 ms, so a table lock held elsewhere fails the flush.
    const impatient = new pg.Pool({ connectionString: postgresUrl, max: 2, options: '-c statement_timeout=200' })
    const errors: Error[] = []
    const store = new PostgresKeyStore({
      pool: impatient,
      schema,
      listen: false,
      lastUsedFlushMs: 3_600_000,
      onError: (error) => {
        errors.push(error)
      },
    })
    const tenant = conformanceTenant()
    await store.putTenant(tenant)
    const created = await createKeyManager(store).create(tenant.tenantId, { label: 'agent' })
    await store.recordKeyUse(created.keyId, new Date('2030-01-01T00:00:00.000Z'))
    const locker = await pool.connect()
    await locker.query('BEGIN')
    await locker.query(`LOCK TABLE "${schema}".saiku_api_keys IN ACCESS EXCLUSIVE MODE`)
    await expect(store.flushKeyUses()).rejects.toThrow('statement timeout')
    expect(errors.map((error) => error.message)).toEqual(['canceling statement due to statement timeout'])
    await locker.query('COMMIT')
    locker.release()
    expect(await store.flushKeyUses()).toBe(1)
    expect((await store.findKey(created.keyId))?.lastUsedAt?.toISOString()).toBe('2030-01-01T00:00:00.000Z')
    await store.close()
    await impatient.end()
  })

  for (const [kind, raise] of [
    ['rejects', async (error: Error): Promise<never> => Promise.reject(error)],
    [
      'throws',
      (error: Error): never => {
        throw error
      },
    ],
  ] as const) {
    it(`reports a failed flush to an onError that ${kind}: one warning per distinct message, the store working on`, async () => {
      const warnings = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
      const id = randomUUID()
      const store = new PostgresKeyStore({
        pool,
        schema: freshSchema(),
        listen: false,
        lastUsedFlushMs: 3_600_000,
        onError: (error) => raise(new Error(`log sink down ${id}: ${error.message}`)),
      })
      const tenant = conformanceTenant()
      await store.putTenant(tenant)
      const created = await createKeyManager(store).create(tenant.tenantId, { label: 'agent' })
      await store.recordKeyUse(created.keyId, new Date('2030-01-01T00:00:00.000Z'))
      const query = vi.spyOn(pool, 'query').mockRejectedValue(new Error('connection lost'))
      for (let i = 0; i < 3; i++) await expect(store.flushKeyUses()).rejects.toThrow('connection lost')
      query.mockRestore()
      await vi.waitFor(
        () => expect(warnings.mock.calls.filter(([message]) => String(message).includes(id))).toHaveLength(1),
        { timeout: 10_000 },
      )
      expect(warnings.mock.calls.find(([message]) => String(message).includes(id))).toEqual([
        `Saiku auth: the onError hook threw or rejected, and was ignored: Error: log sink down ${id}: connection lost`,
        { code: 'SAIKU_HOOK_FAILED' },
      ])
      expect(await store.flushKeyUses()).toBe(1)
      await store.close()
    })
  }

  it('refuses a bad schema name at construction', () => {
    expect(() => new PostgresKeyStore({ pool, schema: 'public; DROP TABLE x' })).toThrow(
      'schema: expected a lower-case SQL identifier',
    )
  })
})
