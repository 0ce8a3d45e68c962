import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createAuthenticator, createKeyManager, type AuthRequest } from '@saiku/core'
import { conformanceTenant } from '@saiku/core/testing'
import { postgresUrl } from '@saiku/test-support/services'
import { tcpProxy, type TcpProxy } from '@saiku/test-support/tcp-proxy'
import { PostgresKeyStore } from './index.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe.skipIf(postgresUrl === undefined)('PostgresKeyStore under faults', () => {
  const schema = `saiku_fault_${randomUUID().replaceAll('-', '').slice(0, 16)}`
  let admin: pg.Pool
  let proxy: TcpProxy
  let pool: pg.Pool
  beforeAll(async () => {
    admin = new pg.Pool({ connectionString: postgresUrl, max: 2 })
    const url = new URL(postgresUrl!)
    proxy = await tcpProxy(url.hostname, Number(url.port || 5432))
    url.hostname = '127.0.0.1'
    url.port = String(proxy.port)
    pool = new pg.Pool({ connectionString: url.href, max: 4, connectionTimeoutMillis: 300 })
    // A dropped idle connection is an error event on the pool: the pool replaces it.
    pool.on('error', () => {})
  })
  afterAll(async () => {
    await pool.end().catch(() => {})
    await proxy.close()
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await admin.end()
  })

  it('answers no 401 or 429 while PostgreSQL is away, and 200 on the first request after it is back', async () => {
    const store = new PostgresKeyStore({ pool, schema })
    await store.ready()
    const tenant = conformanceTenant()
    await store.putTenant(tenant)
    const manager = createKeyManager(store)
    const cached = await manager.create(tenant.tenantId, { label: 'cached' })
    const unseen = await manager.create(tenant.tenantId, { label: 'unseen' })
    const errors: Error[] = []
    const auth = createAuthenticator(store, {
      cache: { ttlMs: 500 },
      keyStoreTimeoutMs: 400,
      failedAuth: { perMinute: 3 },
      onError: (error) => errors.push(error),
    })
    const from = (key: string): AuthRequest => ({
      headers: { authorization: `Bearer ${key}` },
      method: 'GET',
      url: '/me/tenant',
      ip: '203.0.113.9',
    })
    const status = async (key: string) => {
      const decision = await auth.authenticate(from(key))
      return decision.ok ? 200 : decision.status
    }
    expect(await status(cached.key)).toBe(200)

    proxy.cut()
    const during = new Map<number, number>()
    const outageEnds = Date.now() + 2_500
    while (Date.now() < outageEnds) {
      for (const key of [cached.key, unseen.key]) {
        const answered = await status(key)
        during.set(answered, (during.get(answered) ?? 0) + 1)
      }
      await sleep(50)
    }
    expect([...during.keys()].filter((answered) => answered !== 200 && answered !== 503)).toEqual([])
    expect(during.get(503)).toBeGreaterThan(10)
    expect(errors.every((error) => error.name === 'SaikuStoreError')).toBe(true)

    proxy.restore()
    expect(await status(unseen.key)).toBe(200)
    expect(await status(cached.key)).toBe(200)
    auth.close()
    await store.close()
  })

  it('admits forty concurrent first requests for one fresh key from one address, whatever the failure budget', async () => {
    const store = new PostgresKeyStore({ pool: admin, schema, listen: false })
    await store.ready()
    const tenant = conformanceTenant()
    await store.putTenant(tenant)
    const { key } = await createKeyManager(store).create(tenant.tenantId, { label: 'fresh' })
    const auth = createAuthenticator(store, { failedAuth: { perMinute: 5 } })
    const request: AuthRequest = {
      headers: { authorization: `Bearer ${key}` },
      method: 'GET',
      url: '/me/tenant',
      ip: '203.0.113.11',
    }
    const decisions = await Promise.all(Array.from({ length: 40 }, () => auth.authenticate(request)))
    expect(decisions.map((decision) => (decision.ok ? 200 : decision.status))).toEqual(Array(40).fill(200))
    auth.close()
    await store.close()
  })

  it('notices a LISTEN connection that stalls without an error, reports it, and applies revocations made meanwhile once it listens again', async () => {
    const url = new URL(postgresUrl!)
    const listenProxy = await tcpProxy(url.hostname, Number(url.port || 5432))
    url.hostname = '127.0.0.1'
    url.port = String(listenProxy.port)
    const listenPool = new pg.Pool({ connectionString: url.href, max: 2, connectionTimeoutMillis: 300 })
    listenPool.on('error', () => {})
    const a = new PostgresKeyStore({ pool: admin, schema })
    const errors: Error[] = []
    const b = new PostgresKeyStore({
      pool: admin,
      schema,
      listenPool,
      listenCheckMs: 200,
      onError: (error) => errors.push(error),
    })
    await Promise.all([a.ready(), b.ready()])
    const tenant = conformanceTenant()
    await a.putTenant(tenant)
    const created = await createKeyManager(a).create(tenant.tenantId, { label: 'agent' })
    const authB = createAuthenticator(b, { cache: { ttlMs: 3_600_000 } })
    const request: AuthRequest = {
      headers: { authorization: `Bearer ${created.key}` },
      method: 'GET',
      url: '/me/tenant',
      ip: '203.0.113.10',
    }
    expect((await authB.authenticate(request)).ok).toBe(true)

    listenProxy.stall()
    await createKeyManager(a).revoke(tenant.tenantId, created.keyId)
    await expect.poll(() => errors.length, { timeout: 3_000, interval: 20 }).toBeGreaterThan(0)
    expect(errors[0]!.message).toMatch(/LISTEN connection heard no notification/)
    // While B cannot listen, its cache still holds the key (the cache TTL is the bound)...
    expect((await authB.authenticate(request)).ok).toBe(true)
    listenProxy.restore()
    // ...and once it listens again, everything it may have missed is forgotten.
    await expect.poll(async () => (await authB.authenticate(request)).ok, { timeout: 8_000, interval: 50 }).toBe(false)
    authB.close()
    await Promise.all([a.close(), b.close()])
    await listenPool.end().catch(() => {})
    await listenProxy.close()
  })
})
