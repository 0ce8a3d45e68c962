import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import Database from 'better-sqlite3'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { createAuthenticator, createKeyManager } from '@saiku/core'
import { onKeyStoreChange, type KeyChange } from '@saiku/core/store'
import { conformanceTenant, describeKeyStoreConformance, installFakeClock } from '@saiku/core/testing'
import { MIGRATIONS, SqliteKeyStore } from './index.js'

const dir = mkdtempSync(join(tmpdir(), 'saiku-sqlite-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let files = 0
const freshFile = () => join(dir, `store-${files++}.db`)

describeKeyStoreConformance('SqliteKeyStore', async () => {
  const store = new SqliteKeyStore(freshFile(), { watchIntervalMs: 0 })
  return { store, addTenant: (tenant) => store.putTenant(tenant), close: async () => store.close() }
})

describe('SqliteKeyStore', () => {
  it('keeps keys, tenants and revocations across a reopen', async () => {
    const file = freshFile()
    const tenant = conformanceTenant({ tier: 'enterprise', limits: { perMinute: 7, perHour: 70 } })
    const first = new SqliteKeyStore(file, { watchIntervalMs: 0 })
    await first.putTenant(tenant)
    const keys = createKeyManager(first)
    const kept = await keys.create(tenant.tenantId, { label: 'kept', permissions: ['keys:read'] })
    const revoked = await keys.create(tenant.tenantId, { label: 'revoked' })
    await keys.revoke(tenant.tenantId, revoked.keyId)
    first.close()

    const second = new SqliteKeyStore(file, { watchIntervalMs: 0 })
    expect(await second.findTenantBySlug(tenant.tenantSlug)).toMatchObject({
      tier: 'enterprise',
      limits: { perMinute: 7, perHour: 70 },
    })
    expect((await second.listKeys(tenant.tenantId)).map((k) => k.keyId)).toEqual([kept.keyId])
    const auth = createAuthenticator(second)
    const request = (key: string) => ({ headers: { authorization: `Bearer ${key}` }, method: 'GET', url: '/me/tenant' })
    expect((await auth.authenticate(request(kept.key))).ok).toBe(true)
    expect((await auth.authenticate(request(revoked.key))).ok).toBe(false)
    auth.close()
    second.close()
  })

  it('refuses a tenant whose own monthly quota is spent with a 429 naming it, read from the file', async () => {
    const clock = installFakeClock(Date.parse('2027-01-10T12:00:00Z'))
    const file = freshFile()
    const tenant = conformanceTenant({
      tier: 'enterprise',
      subscription: { status: 'active', trialEndsAt: null },
      limits: { perMinute: 2, perHour: 2, perDay: 2, perMonth: 3 },
    })
    const writer = new SqliteKeyStore(file, { watchIntervalMs: 0 })
    await writer.putTenant(tenant)
    const { key } = await createKeyManager(writer).create(tenant.tenantId, { label: 'agent' })
    writer.close()
    // Another handle on the file, as a server that did not write the tenant, reading it on every request.
    const store = new SqliteKeyStore(file, { watchIntervalMs: 0 })
    const auth = createAuthenticator(store, { cache: { ttlMs: 0 } })
    const send = () => auth.authenticate({ headers: { authorization: `Bearer ${key}` }, method: 'GET', url: '/x' })
    try {
      expect((await send()).ok).toBe(true)
      expect((await send()).ok).toBe(true)
      expect(await send()).toMatchObject({ ok: false, status: 429 })
      // The next UTC day has room for one more: the month's third request.
      clock.set(Date.parse('2027-01-11T00:00:00Z'))
      expect((await send()).ok).toBe(true)
      const refused = await send()
      expect(refused).toMatchObject({
        ok: false,
        status: 429,
        // No billing anchor: the calendar month in UTC, which ends on February 1st.
        headers: { 'retry-after': String(21 * 86_400), ratelimit: expect.stringContaining('"month";r=0') as unknown },
      })
      expect(JSON.parse((refused as { body: string }).body)).toEqual({
        error: 'rate_limited',
        message: 'Monthly quota of 3 requests used; it resets at 2027-02-01T00:00:00Z.',
      })
    } finally {
      auth.close()
      store.close()
      clock.restore()
    }
  })

  it('migrates a database made before the billing fields, and keeps them across a reopen', async () => {
    const file = freshFile()
    // A file at the first schema version, with one tenant written then.
    const old = new Database(file)
    old.exec(MIGRATIONS[0]!)
    old.exec(
      'CREATE TABLE saiku_schema_version (version INTEGER NOT NULL); INSERT INTO saiku_schema_version VALUES (1)',
    )
    old
      .prepare(
        `INSERT INTO saiku_tenants (tenant_id, tenant_slug, tier, connection_name, subscription_status) VALUES ('t-old', 'old', 'team', 'w', 'active')`,
      )
      .run()
    old.close()
    const first = new SqliteKeyStore(file, { watchIntervalMs: 0 })
    expect((await first.findTenant('t-old'))?.subscription).toEqual({ status: 'active', trialEndsAt: null })
    const billingAnchor = new Date('2028-01-31T10:00:00.000Z')
    const scheduledChangeAt = new Date('2028-02-29T00:00:00.000Z')
    const tenant = conformanceTenant({
      subscription: { status: 'active', trialEndsAt: null, billingAnchor, scheduledTier: 'starter', scheduledChangeAt },
    })
    await first.putTenant(tenant)
    first.close()
    const second = new SqliteKeyStore(file, { watchIntervalMs: 0 })
    expect((await second.findTenant(tenant.tenantId))?.subscription).toEqual(tenant.subscription)
    second.close()
  })

  it('hears of a revocation another process made, and drops it from the cache', async () => {
    const file = freshFile()
    const tenant = conformanceTenant()
    const server = new SqliteKeyStore(file, { watchIntervalMs: 0 })
    const cli = new SqliteKeyStore(file, { watchIntervalMs: 0 })
    await cli.putTenant(tenant)
    const created = await createKeyManager(cli).create(tenant.tenantId, { label: 'agent' })
    const auth = createAuthenticator(server, { cache: { ttlMs: 3_600_000 } })
    const request = { headers: { authorization: `Bearer ${created.key}` }, method: 'GET', url: '/me/tenant' }
    expect((await auth.authenticate(request)).ok).toBe(true)

    await createKeyManager(cli).revoke(tenant.tenantId, created.keyId)
    // Cached for an hour: only the change log can tell the server.
    expect((await auth.authenticate(request)).ok).toBe(true)
    const heard: KeyChange[] = []
    const stop = onKeyStoreChange(server, (change) => heard.push(change))
    expect(server.pollChanges()).toContainEqual({ kind: 'key', keyId: created.keyId })
    expect(heard).toContainEqual({ kind: 'key', keyId: created.keyId })
    expect(await auth.authenticate(request)).toMatchObject({ ok: false, status: 401 })
    expect(server.pollChanges()).toEqual([])
    stop()
    auth.close()
    server.close()
    cli.close()
  })

  it("hears of another process's allowlist and rotation grace, and reads the key afresh", async () => {
    const file = freshFile()
    const tenant = conformanceTenant()
    const server = new SqliteKeyStore(file, { watchIntervalMs: 0 })
    const cli = new SqliteKeyStore(file, { watchIntervalMs: 0 })
    await cli.putTenant(tenant)
    const created = await createKeyManager(cli).create(tenant.tenantId, { label: 'agent' })
    const auth = createAuthenticator(server, { cache: { ttlMs: 3_600_000 } })
    const from = (ip: string) => ({
      headers: { authorization: `Bearer ${created.key}` },
      method: 'GET',
      url: '/me/tenant',
      ip,
    })
    expect((await auth.authenticate(from('192.0.2.1'))).ok).toBe(true)

    await createKeyManager(cli).update(tenant.tenantId, created.keyId, { allowedAddresses: ['192.0.2.2'] })
    expect(server.pollChanges()).toContainEqual({ kind: 'key', keyId: created.keyId })
    expect(await auth.authenticate(from('192.0.2.1'))).toMatchObject({ ok: false, status: 403 })
    expect((await auth.authenticate(from('192.0.2.2'))).ok).toBe(true)

    const rotated = await createKeyManager(cli).rotate(tenant.tenantId, created.keyId, { graceSeconds: 0 })
    expect(rotated?.allowedAddresses).toEqual(['192.0.2.2'])
    expect(server.pollChanges()).toContainEqual({ kind: 'key', keyId: created.keyId })
    expect(await auth.authenticate(from('192.0.2.2'))).toMatchObject({ ok: false, status: 401 })
    auth.close()
    server.close()
    cli.close()
  })

  it('upgrades a file made before allowed addresses: its keys keep working from any address', async () => {
    const file = freshFile()
    const tenant = conformanceTenant()
    // The first schema only, as a release before this one left it.
    const old = new Database(file)
    old.exec(
      'CREATE TABLE saiku_schema_version (version INTEGER NOT NULL); INSERT INTO saiku_schema_version VALUES (1)',
    )
    old.exec(MIGRATIONS[0]!)
    old.close()
    const store = new SqliteKeyStore(file, { watchIntervalMs: 0 })
    expect(store.db.prepare('SELECT version FROM saiku_schema_version').get()).toEqual({ version: MIGRATIONS.length })
    await store.putTenant(tenant)
    const created = await createKeyManager(store).create(tenant.tenantId, {
      label: 'office',
      allowedAddresses: ['2001:DB8::/32'],
    })
    expect((await store.findKey(created.keyId))?.allowedAddresses).toEqual(['2001:db8::/32'])
    store.close()
  })

  it("upgrades a file made before tenants' own day and month quotas: its tenants read back as they were", async () => {
    const file = freshFile()
    const tenant = conformanceTenant({ tier: 'enterprise', limits: { perMinute: 7, perHour: 70 } })
    // Every step before the quota columns, as the previous release left the file.
    const previous = 3
    const old = new Database(file)
    old.exec(
      `CREATE TABLE saiku_schema_version (version INTEGER NOT NULL); INSERT INTO saiku_schema_version VALUES (${previous})`,
    )
    for (const step of MIGRATIONS.slice(0, previous)) old.exec(step)
    old
      .prepare(
        `INSERT INTO saiku_tenants (tenant_id, tenant_slug, tier, connection_name, subscription_status, trial_ends_at, limit_per_minute, limit_per_hour)
         VALUES (?, ?, 'enterprise', ?, 'active', NULL, 7, 70)`,
      )
      .run(tenant.tenantId, tenant.tenantSlug, tenant.connectionName)
    old.close()

    const store = new SqliteKeyStore(file, { watchIntervalMs: 0 })
    expect(store.db.prepare('SELECT version FROM saiku_schema_version').get()).toEqual({ version: MIGRATIONS.length })
    expect((await store.findTenant(tenant.tenantId))?.limits).toStrictEqual({ perMinute: 7, perHour: 70 })
    await store.putTenant({ ...tenant, limits: { perMinute: 7, perHour: 70, perDay: 700, perMonth: 7_000 } })
    expect((await store.findTenantBySlug(tenant.tenantSlug))?.limits).toEqual({
      perMinute: 7,
      perHour: 70,
      perDay: 700,
      perMonth: 7_000,
    })
    store.close()
  })

  it('upgrades a file made before usage history: its tenants kept, and buckets added up from then on', async () => {
    const file = freshFile()
    const tenant = conformanceTenant()
    const previous = MIGRATIONS.length - 1
    const old = new Database(file)
    old.exec(
      `CREATE TABLE saiku_schema_version (version INTEGER NOT NULL); INSERT INTO saiku_schema_version VALUES (${previous})`,
    )
    for (const step of MIGRATIONS.slice(0, previous)) old.exec(step)
    old
      .prepare(
        `INSERT INTO saiku_tenants (tenant_id, tenant_slug, tier, connection_name, subscription_status) VALUES (?, ?, 'team', ?, 'active')`,
      )
      .run(tenant.tenantId, tenant.tenantSlug, tenant.connectionName)
    old.close()

    const store = new SqliteKeyStore(file, { watchIntervalMs: 0 })
    expect(store.db.prepare('SELECT version FROM saiku_schema_version').get()).toEqual({ version: MIGRATIONS.length })
    expect((await store.findTenant(tenant.tenantId))?.tenantSlug).toBe(tenant.tenantSlug)
    const bucket = {
      tenantId: tenant.tenantId,
      keyId: null,
      hourStartMs: 3_600_000,
      admitted: 1,
      rateLimited: 0,
      quotaExceeded: 0,
      forbidden: 0,
      paymentRequired: 0,
    }
    // Two connections to one file, as two processes: their writes add up.
    const other = new SqliteKeyStore(file, { watchIntervalMs: 0 })
    await Promise.all([store.addUsage([bucket]), other.addUsage([{ ...bucket, admitted: 2 }])])
    expect(await store.readUsage({ tenantId: tenant.tenantId, fromMs: 0, toMs: 7_200_000 })).toEqual([
      { ...bucket, admitted: 3 },
    ])
    other.close()
    store.close()
  })

  it('keeps polling through errors instead of crashing the process', async () => {
    const errors: Error[] = []
    const store = new SqliteKeyStore(freshFile(), { watchIntervalMs: 5, onError: (error) => errors.push(error) })
    const poll = vi.spyOn(store, 'pollChanges').mockImplementation(() => {
      throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' })
    })
    await vi.waitFor(() => expect(poll.mock.calls.length).toBeGreaterThan(2))
    expect(errors[0]?.message).toBe('database is locked')
    store.close()
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
    it(`keeps polling when its onError ${kind}: one warning per distinct message`, async () => {
      const warnings = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
      const id = randomUUID()
      const store = new SqliteKeyStore(freshFile(), {
        watchIntervalMs: 5,
        onError: (error) => raise(new Error(`log sink down ${id}: ${error.message}`)),
      })
      const poll = vi.spyOn(store, 'pollChanges').mockImplementation(() => {
        throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' })
      })
      await vi.waitFor(() => expect(poll.mock.calls.length).toBeGreaterThan(5), { timeout: 10_000 })
      const ours = warnings.mock.calls.filter(([message]) => String(message).includes(id))
      expect(ours).toEqual([
        [
          `Saiku auth: the onError hook threw or rejected, and was ignored: Error: log sink down ${id}: database is locked`,
          { code: 'SAIKU_HOOK_FAILED' },
        ],
      ])
      store.close()
    })
  }

  it('refuses an onError that is not a function', () => {
    expect(() => new SqliteKeyStore(freshFile(), { onError: 'log' as never })).toThrow('onError: expected a function')
  })

  it('gathers last-use writes and writes them together', async () => {
    const store = new SqliteKeyStore(freshFile(), { watchIntervalMs: 0, lastUsedFlushMs: 60_000 })
    const tenant = conformanceTenant()
    await store.putTenant(tenant)
    const created = await createKeyManager(store).create(tenant.tenantId, { label: 'agent' })
    for (let i = 0; i < 50; i++) await store.recordKeyUse(created.keyId, new Date(1_900_000_000_000 + i))
    expect(store.db.prepare('SELECT last_used_at FROM saiku_api_keys').get()).toEqual({ last_used_at: null })
    expect(await store.flushKeyUses()).toBe(1)
    expect(store.db.prepare('SELECT last_used_at FROM saiku_api_keys').get()).toEqual({
      last_used_at: 1_900_000_000_049,
    })
    store.close()
  })

  it('refuses a second tenant with the same slug, and an invalid tenant', async () => {
    const store = new SqliteKeyStore(freshFile(), { watchIntervalMs: 0 })
    const tenant = conformanceTenant()
    await store.putTenant(tenant)
    await expect(store.putTenant(conformanceTenant({ tenantSlug: tenant.tenantSlug }))).rejects.toThrow(/UNIQUE/)
    await expect(store.putTenant(conformanceTenant({ tier: 'enterprise', limits: null }))).rejects.toThrow('limits')
    store.close()
  })

  describe('with another connection holding the write lock (BEGIN IMMEDIATE)', () => {
    async function lockedStore(options: { busyTimeoutMs?: number } = {}) {
      const file = freshFile()
      const errors: Error[] = []
      const store = new SqliteKeyStore(file, {
        watchIntervalMs: 0,
        lastUsedFlushMs: 3_600_000,
        onError: (error) => errors.push(error),
        ...options,
      })
      const tenant = conformanceTenant()
      await store.putTenant(tenant)
      const locker = new Database(file)
      locker.exec('BEGIN IMMEDIATE')
      return { store, tenant, locker, errors }
    }

    it('never waits on the lock on the event loop: reads are answered while a write waits', async () => {
      const { store, tenant, locker } = await lockedStore({ busyTimeoutMs: 10_000 })
      let settled = false
      const write = store.putTenant(conformanceTenant()).finally(() => (settled = true))
      const ticks = await new Promise<number>((resolve) => {
        let count = 0
        const tick = () => (++count === 20 ? resolve(count) : setImmediate(tick))
        setImmediate(tick)
      })
      expect(ticks).toBe(20)
      expect(await store.findTenant(tenant.tenantId)).toMatchObject({ tenantId: tenant.tenantId })
      expect(settled).toBe(false)
      locker.exec('COMMIT')
      await write
      expect(await store.listTenants()).toHaveLength(2)
      locker.close()
      store.close()
    })

    it('fails a write with a SaikuStoreError once the lock outlasts busyTimeoutMs', async () => {
      const { store, tenant, locker } = await lockedStore({ busyTimeoutMs: 100 })
      await expect(createKeyManager(store).create(tenant.tenantId, { label: 'x' })).rejects.toMatchObject({
        name: 'SaikuStoreError',
        source: 'key_store',
      })
      await expect(store.revokeKey('AAAAAAAAAAAA', new Date())).rejects.toThrow(
        'stayed locked by another connection for 100 ms',
      )
      locker.exec('ROLLBACK')
      expect((await createKeyManager(store).create(tenant.tenantId, { label: 'x' })).label).toBe('x')
      locker.close()
      store.close()
    })

    it('keeps the last uses of a failed flush, reports the failure, and writes them on the next flush', async () => {
      const { store, tenant, locker, errors } = await lockedStore({ busyTimeoutMs: 50 })
      locker.exec('ROLLBACK')
      const created = await createKeyManager(store).create(tenant.tenantId, { label: 'agent' })
      await store.recordKeyUse(created.keyId, new Date(1_900_000_000_000))
      locker.exec('BEGIN IMMEDIATE')
      await expect(store.flushKeyUses()).rejects.toThrow('stayed locked')
      expect(errors).toHaveLength(1)
      expect(errors[0]).toMatchObject({ name: 'SaikuStoreError' })
      await store.recordKeyUse(created.keyId, new Date(1_800_000_000_000))
      locker.exec('COMMIT')
      expect(await store.flushKeyUses()).toBe(1)
      expect(store.db.prepare('SELECT last_used_at FROM saiku_api_keys').get()).toEqual({
        last_used_at: 1_900_000_000_000,
      })
      locker.close()
      store.close()
    })
  })

  it('starts one trial from two connections on one file, however many ask at once', async () => {
    const file = freshFile()
    const stores = [new SqliteKeyStore(file, { watchIntervalMs: 0 }), new SqliteKeyStore(file, { watchIntervalMs: 0 })]
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
    for (const store of stores) store.close()
  })
})
