import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { EventEmitter, once } from 'node:events'
import { fileURLToPath } from 'node:url'
import express from 'express'
import { Cluster, Redis } from 'ioredis'
import request from 'supertest'
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest'
import { createAuthenticator, MemoryKeyStore, type KeyStore } from '@saiku/core'
import { keyStoreTrustCapMs, onKeyStoreChange, type KeyChange } from '@saiku/core/store'
import { saikuAuth } from '@saiku/express'
import {
  hasRedisServerBinary,
  ownRedis,
  ownRedisCluster,
  redisUrl,
  type OwnRedis,
  type OwnRedisCluster,
} from '@saiku/test-support/services'
import { tcpProxy } from '@saiku/test-support/tcp-proxy'
import { keySlot } from './breaker.js'
import { createRedisChangeFeed, createRedisLimiter, type RedisPublisher, type RedisSubscriber } from './index.js'
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
    const sizes: number[] = []
    const limiter = createRedisLimiter({ client, onBatch: (size) => sizes.push(size) })
    const tenants = Array.from({ length: 12 }, () => `t-${randomUUID()}`)
    const decisions = await Promise.all(
      tenants.flatMap((tenant) =>
        Array.from({ length: 15 }, () => limiter.consume(tenant, { perMinute: 10, perHour: 100 })),
      ),
    )
    expect(decisions.filter((d) => d.admitted)).toHaveLength(12 * 10)
    const slots = await Promise.all(tenants.map((tenant) => client.cluster('KEYSLOT', limiter.keyFor(tenant))))
    expect(new Set(slots).size).toBeGreaterThan(1)
    // One batch per slot, never spanning two: the turn went out as one call per slot its tenants hash to.
    expect(sizes).toHaveLength(new Set(slots).size)
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(12 * 15)
    for (const [i, tenant] of tenants.entries()) expect(keySlot(limiter.keyFor(tenant))).toBe(slots[i])
  })

  it('admits exactly the limit on a client with auto-pipelining: a batch goes to its own slot, never by its key count', async () => {
    const pipelined = new Cluster(cluster.nodes, { enableOfflineQueue: true, enableAutoPipelining: true })
    onTestFinished(() => pipelined.disconnect())
    await new Promise((resolve) => pipelined.once('ready', resolve))
    const limiter = createRedisLimiter({ client: pipelined, keyPrefix: `pipelined-${randomUUID()}` })
    const tenants = Array.from({ length: 12 }, () => `t-${randomUUID()}`)
    for (let turn = 0; turn < 3; turn++) {
      const decisions = await Promise.all(
        tenants.flatMap((tenant) =>
          Array.from({ length: 5 }, () => limiter.consume(tenant, { perMinute: 10, perHour: 100 })),
        ),
      )
      expect(decisions.filter((d) => d.admitted)).toHaveLength(turn < 2 ? 12 * 5 : 0)
    }
    for (const tenant of tenants) expect(await pipelined.hget(limiter.keyFor(tenant), 'mc')).toBe('10')
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
    // One turn for tenants on both: the dead master's batch waits and marks the node down; the others answer.
    const first = backend.consume(onDead[0]!, limits).catch((error: Error) => error)
    const liveInTheSameTurn = await Promise.all(onLive.slice(0, 3).map((tenant) => backend.consume(tenant, limits)))
    expect(liveInTheSameTurn.map((d) => d.admitted)).toEqual([true, true, true])
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
    expect(await first).toMatchObject({ name: 'SaikuStoreError' })
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

  it('on a frozen subscriber connection: revocations apply within 2 × checkMs, not cache.ttlMs, and it hears again once the network heals', async () => {
    // Limits well above the requests the test makes: every refusal below is a 401.
    const shared = new MemoryKeyStore({ tenants: [{ ...acme, limits: { perMinute: 100_000, perHour: 1_000_000 } }] })
    const other: KeyStore = {
      findKey: (keyId) => shared.findKey(keyId),
      findTenant: (tenantId) => shared.findTenant(tenantId),
      createKey: (record) => shared.createKey(record),
      listKeys: (tenantId) => shared.listKeys(tenantId),
      revokeKey: (keyId, at) => shared.revokeKey(keyId, at),
    }
    const url = new URL(redisUrl!)
    const proxy = await tcpProxy(url.hostname, Number(url.port || 6379))
    url.hostname = '127.0.0.1'
    url.port = String(proxy.port)
    const channel = `saiku:test:${randomUUID()}`
    const clients = Array.from({ length: 3 }, () => new Redis(redisUrl!))
    const frozenSubscriber = new Redis(url.href)
    frozenSubscriber.on('error', () => {})
    // Connected and past ioredis's ready check, as in a running server, before the feed subscribes on it.
    await once(frozenSubscriber, 'ready')
    const errors: Error[] = []
    const feedA = await createRedisChangeFeed(shared, { publisher: clients[0]!, subscriber: clients[1]!, channel })
    const feedB = await createRedisChangeFeed(other, {
      publisher: clients[2]!,
      subscriber: frozenSubscriber,
      channel,
      checkMs: 300,
      // An audit sink that is down: the hook rejects, and the feed goes on.
      onError: async (error) => {
        errors.push(error)
        throw new Error('error sink unavailable')
      },
    })
    const manager = createAuthenticator(shared).keys
    const authB = createAuthenticator(other, { cache: { ttlMs: 120_000 }, failedAuth: false })
    const status = async (key: string) => {
      const decision = await authB.authenticate({
        headers: { authorization: `Bearer ${key}` },
        method: 'GET',
        url: '/me/tenant',
      })
      return decision.ok ? 200 : decision.status
    }
    const first = await manager.create('t-acme', { label: 'first' })
    expect(await status(first.key)).toBe(200)
    expect(feedB.live).toBe(true)

    proxy.freeze()
    await manager.revoke('t-acme', first.keyId)
    await expect.poll(() => status(first.key), { timeout: 8_000, interval: 50 }).toBe(401)
    expect(errors[0]!.message).toMatch(/^Redis change feed heard no message for 300 ms; caches cleared/)
    expect(feedB.live).toBe(false)

    proxy.restore()
    await expect.poll(() => feedB.live, { timeout: 20_000, interval: 50 }).toBe(true)
    const second = await manager.create('t-acme', { label: 'second' })
    expect(await status(second.key)).toBe(200)
    const heard: KeyChange[] = []
    const stop = onKeyStoreChange(other, (change) => heard.push(change))
    await manager.revoke('t-acme', second.keyId)
    await expect
      .poll(() => heard, { timeout: 5_000, interval: 20 })
      .toContainEqual({ kind: 'key', keyId: second.keyId })
    expect(await status(second.key)).toBe(401)
    stop()
    await Promise.all([feedA.close(), feedB.close()])
    authB.close()
    for (const client of [...clients, frozenSubscriber]) client.disconnect()
    await proxy.close()
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

describe('createRedisChangeFeed on a subscriber that drops and hangs (no Redis needed)', () => {
  /** A subscriber as ioredis is one: an event emitter; with `hangs`, `unsubscribe` never answers, as on a stalled connection. */
  function fakeClients(hangs = false) {
    const events = new EventEmitter()
    const subscriber = {
      on: (event: string, listener: (...args: string[]) => void) => events.on(event, listener),
      off: (event: string, listener: (...args: string[]) => void) => events.off(event, listener),
      subscribe: vi.fn(() => Promise.resolve(1)),
      unsubscribe: () => (hangs ? new Promise<never>(() => {}) : Promise.resolve(1)),
    }
    const publisher = { publish: vi.fn(() => Promise.resolve(0)) }
    return { events, subscriber, publisher }
  }

  /** A feed of a fresh store: what the store's caches were told, and what an `onError` that rejects (a sink that is down) heard. */
  async function watchedFeed(publisher: RedisPublisher, subscriber: RedisSubscriber, checkMs: number) {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const heard: KeyChange[] = []
    onKeyStoreChange(store, (change) => heard.push(change))
    const errors: Error[] = []
    const feed = await createRedisChangeFeed(store, {
      publisher,
      subscriber,
      checkMs,
      onError: (error) => {
        errors.push(error)
        return Promise.reject(new Error('error sink unavailable'))
      },
    })
    return { store, heard, errors, feed }
  }

  it('goes down when the connection closes (caches cleared, trust capped), and hears again once subscribed on the next', async () => {
    const { events, subscriber, publisher } = fakeClients()
    const { store, heard, errors, feed } = await watchedFeed(publisher, subscriber, 0)
    expect(feed.live).toBe(true)
    events.emit('close')
    events.emit('close')
    expect(feed.live).toBe(false)
    expect(heard).toEqual([{ kind: 'all' }])
    expect(keyStoreTrustCapMs(store)).toBe(5_000)
    events.emit('ready')
    await vi.waitFor(() => expect(feed.live).toBe(true))
    expect(subscriber.subscribe).toHaveBeenCalledTimes(2)
    expect(heard).toEqual([{ kind: 'all' }, { kind: 'all' }])
    expect(keyStoreTrustCapMs(store)).toBeUndefined()
    await vi.waitFor(() => expect(errors).toHaveLength(1))
    expect(errors[0]!.message).toMatch(/^Redis change feed lost its subscriber connection; caches cleared/)
    await feed.close()
  })

  it('goes down when its heartbeat cannot even be published (the whole path to Redis frozen), piles up no other, and hears again once it comes back', async () => {
    const { events, subscriber } = fakeClients()
    const sent: { channel: string; message: string; taken: () => void }[] = []
    // A publisher whose connection is frozen too: Redis never takes the heartbeat.
    const publisher = {
      publish: vi.fn(
        (channel: string, message: string) =>
          new Promise<number>((resolve) => sent.push({ channel, message, taken: () => resolve(1) })),
      ),
    }
    const { store, heard, errors, feed } = await watchedFeed(publisher, subscriber, 50)
    await vi.waitFor(() => expect(feed.live).toBe(false), { timeout: 5_000, interval: 10 })
    expect(heard).toEqual([{ kind: 'all' }])
    expect(keyStoreTrustCapMs(store)).toBe(50)
    expect(errors[0]!.message).toMatch(
      /^Redis change feed unproven: its heartbeat could not be published in 50 ms; caches cleared/,
    )
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(publisher.publish).toHaveBeenCalledTimes(1)
    // The path heals: the heartbeat is taken and comes back through the subscription.
    const [ping] = sent
    ping!.taken()
    events.emit('message', ping!.channel, ping!.message)
    expect(feed.live).toBe(true)
    expect(keyStoreTrustCapMs(store)).toBeUndefined()
    expect(heard).toEqual([{ kind: 'all' }, { kind: 'all' }])
    await feed.close()
  })

  it('close() does not wait on an unsubscribe that never answers past the trust bound', async () => {
    const { subscriber, publisher } = fakeClients(true)
    const feed = await createRedisChangeFeed(new MemoryKeyStore(), { publisher, subscriber, checkMs: 50 })
    await expect(feed.close()).resolves.toBeUndefined()
    expect(feed.live).toBe(false)
  })

  it('refuses a checkMs that is not a non-negative integer', async () => {
    const { subscriber, publisher } = fakeClients()
    await expect(createRedisChangeFeed(new MemoryKeyStore(), { publisher, subscriber, checkMs: -1 })).rejects.toThrow(
      'checkMs: expected a non-negative integer, got -1',
    )
  })
})
