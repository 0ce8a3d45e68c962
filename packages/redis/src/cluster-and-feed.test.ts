import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import express from 'express'
import { Cluster, Redis } from 'ioredis'
import request from 'supertest'
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest'
import { createAuthenticator, MemoryKeyStore, type KeyStore } from '@saiku/core'
import { saikuAuth } from '@saiku/express'
import {
  hasRedisServerBinary,
  ownRedis,
  ownRedisCluster,
  redisUrl,
  type OwnRedis,
  type OwnRedisCluster,
} from '@saiku/test-support/services'
import { keySlot } from './breaker.js'
import { createRedisChangeFeed, createRedisLimiter } from './index.js'
import { redisClusterLimits, redisLimits } from './readme-usage.js'

const acme = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'w',
  subscription: { status: 'active' as const },
}

describe.skipIf(!hasRedisServerBinary())('Redis Cluster', () => {
  let cluster: OwnRedisCluster
  let client: Cluster
  beforeAll(async () => {
    cluster = await ownRedisCluster()
    client = new Cluster(cluster.nodes, { enableOfflineQueue: true })
    await new Promise((resolve) => client.once('ready', resolve))
  }, 30_000)
  afterAll(async () => {
    client?.disconnect()
    await cluster?.stop()
  })

  it('admits exactly the limit for tenants spread over every slot, with no CROSSSLOT error', async () => {
    const limiter = createRedisLimiter({ client })
    const tenants = Array.from({ length: 12 }, () => `t-${randomUUID()}`)
    const decisions = await Promise.all(
      tenants.flatMap((tenant) =>
        Array.from({ length: 15 }, () => limiter.consume(tenant, { perMinute: 10, perHour: 100 })),
      ),
    )
    expect(decisions.filter((d) => d.admitted)).toHaveLength(12 * 10)
    const slots = new Set(await Promise.all(tenants.map((tenant) => client.cluster('KEYSLOT', limiter.keyFor(tenant)))))
    expect(slots.size).toBeGreaterThan(1)
  })

  it('works as the README sets it up, and fails fast for the tenants of a dead master while the others go on', async () => {
    // The last test of this block: it kills a master of the block's cluster.
    const store = new MemoryKeyStore({ tenants: [acme] })
    const redisLimits = await redisClusterLimits(cluster.nodes, store)
    onTestFinished(() => redisLimits.close())
    const auth = createAuthenticator(store, { limiter: redisLimits.limiter })
    const { key } = await auth.keys.create('t-acme', { label: 'agent' })
    const decision = await auth.authenticate({
      headers: { authorization: `Bearer ${key}` },
      method: 'GET',
      url: '/me/tenant',
    })
    expect(decision).toMatchObject({ ok: true, principal: { rateLimit: { admitted: true } } })

    const faulty = new Cluster(cluster.nodes, { enableOfflineQueue: false })
    faulty.on('error', () => {})
    await once(faulty, 'ready')
    const backend = createRedisLimiter({ client: faulty, nodeDownAfterMs: 200, nodeDownPauseMs: 60_000 })
    const tenants = Array.from({ length: 30 }, () => `t-${randomUUID()}`)
    const deadPort = cluster.nodes[0]!.port
    const onDead = tenants.filter(
      (tenant) => faulty.slots[keySlot(backend.keyFor(tenant))]?.[0] === `127.0.0.1:${deadPort}`,
    )
    const onLive = tenants.filter((tenant) => !onDead.includes(tenant))
    expect(onDead.length).toBeGreaterThan(0)
    await cluster.killNode(0)
    const limits = { perMinute: 10, perHour: 100 }
    // The first call to the dead master waits; it marks the node down.
    const first = backend.consume(onDead[0]!, limits).catch((error: Error) => error)
    await new Promise((resolve) => setTimeout(resolve, 300))
    for (const tenant of onDead) {
      await expect(backend.consume(tenant, limits)).rejects.toMatchObject({
        name: 'SaikuStoreError',
        message: `Redis node 127.0.0.1:${deadPort} is down; failing fast`,
      })
    }
    // Tenants on the live masters are not held back by the dead one.
    for (const tenant of onLive.slice(0, 5)) expect((await backend.consume(tenant, limits)).admitted).toBe(true)
    faulty.disconnect()
    await first
  }, 40_000)
})

describe.skipIf(!hasRedisServerBinary())('per HTTP request', () => {
  let redis: OwnRedis
  beforeAll(async () => {
    redis = await ownRedis()
  })
  afterAll(async () => redis?.stop())

  it('costs one round trip and four Redis commands', async () => {
    const client = new Redis(redis.url, { enableOfflineQueue: false })
    await new Promise((resolve) => client.once('ready', resolve))
    const store = new MemoryKeyStore({ tenants: [acme] })
    const app = express()
    const auth = saikuAuth(store, { limiter: { backend: createRedisLimiter({ client }) } })
    app.use(auth)
    app.get('/me/tenant', (req, res) => res.json(req.saiku!.tenant))
    const { key } = await auth.authenticator.keys.create('t-acme', { label: 'agent' })
    await request(app).get('/me/tenant').set('Authorization', `Bearer ${key}`)
    await client.config('RESETSTAT')
    const requests = 40
    for (let i = 0; i < requests; i++)
      expect((await request(app).get('/me/tenant').set('Authorization', `Bearer ${key}`)).status).toBe(200)
    const stats = await client.info('commandstats')
    const calls = Object.fromEntries(
      [...stats.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)].map((m): [string, number] => [m[1]!, Number(m[2])]),
    )
    const { config: _reset, info: _info, ...byRequests } = calls
    const total = Object.values(byRequests).reduce((sum, n) => sum + n, 0)
    console.log(
      `Redis per HTTP request: ${(calls.evalsha ?? 0) / requests} round trip(s), ${total / requests} commands (${JSON.stringify(byRequests)})`,
    )
    expect((calls.evalsha ?? 0) / requests).toBe(1)
    expect(total / requests).toBe(4)
    auth.authenticator.close()
    client.disconnect()
  })
})

describe.skipIf(redisUrl === undefined)('createRedisChangeFeed', () => {
  it('carries a revocation from one process’s store to another’s at once, and never echoes it back', async () => {
    // Two processes, each with its own store object over the same data.
    const shared = new MemoryKeyStore({ tenants: [acme] })
    const other: KeyStore = {
      findKey: (keyId) => shared.findKey(keyId),
      findTenant: (tenantId) => shared.findTenant(tenantId),
      createKey: (record) => shared.createKey(record),
      listKeys: (tenantId) => shared.listKeys(tenantId),
      revokeKey: (keyId, at) => shared.revokeKey(keyId, at),
    }
    const channel = `saiku:test:${randomUUID()}`
    const clients = Array.from({ length: 4 }, () => new Redis(redisUrl!))
    const feedA = await createRedisChangeFeed(shared, { publisher: clients[0]!, subscriber: clients[1]!, channel })
    const feedB = await createRedisChangeFeed(other, { publisher: clients[2]!, subscriber: clients[3]!, channel })
    const authB = createAuthenticator(other, { cache: { ttlMs: 3_600_000 } })
    const { key, keyId } = await createAuthenticator(shared).keys.create('t-acme', { label: 'agent' })
    const requestFor = { headers: { authorization: `Bearer ${key}` }, method: 'GET', url: '/me/tenant' }
    expect((await authB.authenticate(requestFor)).ok).toBe(true)

    const published = vi.spyOn(clients[2]!, 'publish')
    await shared.revokeKey(keyId, new Date())
    await vi.waitFor(
      async () => expect(await authB.authenticate(requestFor)).toMatchObject({ ok: false, status: 401 }),
      { timeout: 2_000, interval: 10 },
    )
    expect(published).not.toHaveBeenCalled()

    await Promise.all([feedA.close(), feedB.close()])
    authB.close()
    for (const client of clients) client.disconnect()
  })

  it('publishes one revocation made through a key manager once, whether or not the store announces it itself', async () => {
    const announcing = new MemoryKeyStore({ tenants: [acme] })
    const silent: KeyStore = {
      findKey: (keyId) => announcing.findKey(keyId),
      findTenant: (tenantId) => announcing.findTenant(tenantId),
      createKey: (record) => announcing.createKey(record),
      listKeys: (tenantId) => announcing.listKeys(tenantId),
      revokeKey: (keyId, at) => announcing.revokeKey(keyId, at),
    }
    const clients = Array.from({ length: 4 }, () => new Redis(redisUrl!))
    const feeds = [
      await createRedisChangeFeed(announcing, {
        publisher: clients[0]!,
        subscriber: clients[1]!,
        channel: `saiku:test:${randomUUID()}`,
      }),
      await createRedisChangeFeed(silent, {
        publisher: clients[2]!,
        subscriber: clients[3]!,
        channel: `saiku:test:${randomUUID()}`,
      }),
    ]
    for (const [index, store] of [announcing, silent].entries()) {
      const publish = vi.spyOn(clients[index * 2]!, 'publish')
      const manager = createAuthenticator(store).keys
      const { keyId } = await manager.create('t-acme', { label: 'agent' })
      expect(await manager.revoke('t-acme', keyId)).toBe(true)
      expect(publish.mock.calls.filter(([, message]) => String(message).includes(keyId))).toHaveLength(1)
    }
    await Promise.all(feeds.map((feed) => feed.close()))
    for (const client of clients) client.disconnect()
  })

  it('carries invalidateTenant from one process to the others', async () => {
    const shared = new MemoryKeyStore({ tenants: [acme] })
    const other: KeyStore = {
      findKey: (keyId) => shared.findKey(keyId),
      findTenant: (tenantId) => shared.findTenant(tenantId),
      createKey: (record) => shared.createKey(record),
      listKeys: (tenantId) => shared.listKeys(tenantId),
      revokeKey: (keyId, at) => shared.revokeKey(keyId, at),
    }
    const channel = `saiku:test:${randomUUID()}`
    const clients = Array.from({ length: 4 }, () => new Redis(redisUrl!))
    const feedA = await createRedisChangeFeed(shared, { publisher: clients[0]!, subscriber: clients[1]!, channel })
    const feedB = await createRedisChangeFeed(other, { publisher: clients[2]!, subscriber: clients[3]!, channel })
    const authA = createAuthenticator(shared, { cache: { ttlMs: 3_600_000 } })
    const authB = createAuthenticator(other, { cache: { ttlMs: 3_600_000 } })
    const { key } = await authA.keys.create('t-acme', { label: 'agent' })
    const requestFor = { headers: { authorization: `Bearer ${key}` }, method: 'GET', url: '/me/tenant' }
    expect((await authB.authenticate(requestFor)).ok).toBe(true)
    // A change written behind the stores' backs (direct SQL, say), then announced from process A.
    const record = (await shared.findTenant('t-acme'))!
    vi.spyOn(shared, 'findTenant').mockResolvedValue({
      ...record,
      subscription: { status: 'canceled', trialEndsAt: null },
    })
    authA.invalidateTenant('t-acme')
    await vi.waitFor(
      async () => expect(await authB.authenticate(requestFor)).toMatchObject({ ok: false, status: 402 }),
      { timeout: 2_000, interval: 10 },
    )
    await Promise.all([feedA.close(), feedB.close()])
    authA.close()
    authB.close()
    for (const client of clients) client.disconnect()
  })

  it('works as the README sets it up on one Redis: limits counted there, revocations relayed', async () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const limits = await redisLimits(redisUrl!, store)
    const auth = createAuthenticator(store, { limiter: limits.limiter })
    const { key } = await auth.keys.create('t-acme', { label: 'agent' })
    const decision = await auth.authenticate({
      headers: { authorization: `Bearer ${key}` },
      method: 'GET',
      url: '/me/tenant',
    })
    expect(decision).toMatchObject({ ok: true, principal: { rateLimit: { admitted: true } } })
    auth.close()
    await limits.close()
  })

  // In a process of its own: the process ends only if the helper's close() left nothing open.
  it.each([
    ['closes both clients, so a process that calls close() ends', 'REDIS_URL', 0],
    ['rejects when Redis cannot be reached, and leaves no client reconnecting', 'redis://127.0.0.1:1', 1],
  ])(
    'the README helper %s',
    async (_name, url, exitCode) => {
      const script = `
      import { MemoryKeyStore, createAuthenticator } from '@saiku/core'
      import { redisLimits } from ${JSON.stringify(fileURLToPath(new URL('./readme-usage.ts', import.meta.url)))}
      const store = new MemoryKeyStore()
      const limits = await redisLimits(process.env.URL, store).catch((error) => {
        console.log('rejected: ' + error.message)
        process.exitCode = 1
      })
      if (limits !== undefined) {
        const auth = createAuthenticator(store, { limiter: limits.limiter })
        await auth.authenticate({ headers: {}, method: 'GET', url: '/' })
        auth.close()
        await limits.close()
        console.log('closed')
      }
    `
      const child = spawn(
        process.execPath,
        ['--conditions=@saiku/source', '--import', 'tsx', '--input-type=module', '-e', script],
        {
          cwd: fileURLToPath(new URL('..', import.meta.url)),
          env: { ...process.env, URL: url === 'REDIS_URL' ? redisUrl! : url },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      )
      let output = ''
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
      const [code] = (await once(child, 'exit')) as [number | null]
      clearTimeout(timer)
      expect(code, output).toBe(exitCode)
      expect(output).toContain(exitCode === 0 ? 'closed' : 'rejected: connect ECONNREFUSED')
      expect(output, 'one error line per outage, not one per reconnect').not.toMatch(/Unhandled error event/)
    },
    30_000,
  )

  it('ignores messages that are not changes', async () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const channel = `saiku:test:${randomUUID()}`
    const [publisher, subscriber, intruder] = Array.from({ length: 3 }, () => new Redis(redisUrl!))
    const feed = await createRedisChangeFeed(store, { publisher: publisher!, subscriber: subscriber!, channel })
    const auth = createAuthenticator(store)
    const invalidate = vi.spyOn(auth, 'invalidateKey')
    for (const message of ['not json', '{"origin":"x","kind":"key","keyId":"../../etc"}', '{"kind":"tenant"}', '[]'])
      await intruder!.publish(channel, message)
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(invalidate).not.toHaveBeenCalled()
    await feed.close()
    auth.close()
    for (const client of [publisher, subscriber, intruder]) client!.disconnect()
  })
})
