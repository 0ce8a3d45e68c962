import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createAuthenticator, MemoryKeyStore, type AuthRequest } from '@saiku/core'
import { hasRedisServerBinary, ownRedis, redisUrl, type OwnRedis } from '@saiku/test-support/services'
import { createRedisLimiter } from './index.js'

const limits = { perMinute: 60, perHour: 1_000 }

describe.skipIf(redisUrl === undefined)('createRedisLimiter on REDIS_URL', () => {
  let client: Redis
  beforeAll(() => {
    client = new Redis(redisUrl!, { enableOfflineQueue: true, maxRetriesPerRequest: 1 })
  })
  afterAll(() => client.disconnect())
  const tenant = () => `test-${randomUUID()}`

  it('admits exactly the limit of 5× concurrent requests, and leaves a TTL on every key', async () => {
    await client.ping()
    const limiter = createRedisLimiter({ client })
    const key = tenant()
    const decisions = await Promise.all(Array.from({ length: 300 }, () => limiter.consume(key, limits)))
    expect(decisions.filter((d) => d.admitted)).toHaveLength(60)
    expect(
      decisions
        .filter((d) => d.admitted)
        .map((d) => d.minute.remaining)
        .sort((a, b) => a - b),
    ).toEqual(Array.from({ length: 60 }, (_, i) => i))
    const ttl = await client.pttl(limiter.keyFor(key))
    expect(ttl).toBeGreaterThan(3_590_000)
    expect(ttl).toBeLessThanOrEqual(3_600_000)
  })

  it('writes nothing for a refused request: the hour is not consumed by minute refusals', async () => {
    const limiter = createRedisLimiter({ client })
    const key = tenant()
    const small = { perMinute: 3, perHour: 10 }
    for (let i = 0; i < 3; i++) await limiter.consume(key, small)
    for (let i = 0; i < 50; i++) {
      const refused = await limiter.consume(key, small)
      expect(refused).toMatchObject({ admitted: false, minute: { remaining: 0 }, hour: { remaining: 7 } })
      expect(refused.retryAfterMs).toBeGreaterThan(59_000)
      expect(refused.retryAfterMs).toBeLessThanOrEqual(60_000)
    }
    expect(await client.hmget(limiter.keyFor(key), 'mc', 'hc')).toEqual(['3', '3'])
  })

  it('points Retry-After at the hour when the hour is spent, and applies new limits to the same counts', async () => {
    const limiter = createRedisLimiter({ client })
    const key = tenant()
    for (let i = 0; i < 5; i++) await limiter.consume(key, { perMinute: 10, perHour: 5 })
    const refused = await limiter.consume(key, { perMinute: 10, perHour: 5 })
    expect(refused.admitted).toBe(false)
    expect(refused.retryAfterMs).toBeGreaterThan(3_590_000)
    const upgraded = await limiter.consume(key, { perMinute: 10, perHour: 100 })
    expect(upgraded).toMatchObject({ admitted: true, minute: { remaining: 4 }, hour: { remaining: 94 } })
  })

  it('adds one "ready" listener to the client however many limiters share it', () => {
    const shared = new Redis(redisUrl!, { lazyConnect: true })
    const before = shared.listenerCount('ready')
    for (let i = 0; i < 12; i++) createRedisLimiter({ client: shared, keyPrefix: `shared-${i}` })
    expect(shared.listenerCount('ready') - before).toBe(1)
    shared.disconnect()
  })

  it('hash-tags every key by tenant, for Redis Cluster', () => {
    expect(createRedisLimiter({ client, keyPrefix: 'app' }).keyFor('t-1')).toBe('app:{t-1}')
  })
})

describe.skipIf(!hasRedisServerBinary())('createRedisLimiter against a Redis of its own', () => {
  let redis: OwnRedis
  beforeAll(async () => {
    redis = await ownRedis()
  })
  afterAll(async () => redis?.stop())

  const acme = {
    tenantId: 't-acme',
    tenantSlug: 'acme',
    tier: 'starter',
    connectionName: 'w',
    subscription: { status: 'active' as const },
  }
  const request = (key: string): AuthRequest => ({
    headers: { authorization: `Bearer ${key}` },
    method: 'GET',
    url: '/me/tenant',
  })

  it('decides both windows in one round trip of 4 commands (EVALSHA, TIME, HMGET, HSET)', async () => {
    const client = new Redis(redis.url, { enableOfflineQueue: false })
    await new Promise((resolve) => client.once('ready', resolve))
    const limiter = createRedisLimiter({ client })
    await limiter.consume('warm-up', limits)
    await client.config('RESETSTAT')
    const requests = 50
    for (let i = 0; i < requests; i++) await limiter.consume('counted', limits)
    const stats = await client.info('commandstats')
    const calls = Object.fromEntries(
      [...stats.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)].map((m) => [m[1], Number(m[2])]),
    )
    const roundTrips = (calls.evalsha ?? 0) + (calls.eval ?? 0)
    // The first request of a window also sets the TTL (PEXPIRE); RESETSTAT and INFO are this test's own.
    const scriptCommands = (calls.time ?? 0) + (calls.hmget ?? 0) + (calls.hset ?? 0) + (calls.pexpire ?? 0)
    expect(roundTrips / requests).toBe(1)
    expect((roundTrips + scriptCommands) / requests).toBeCloseTo(4 + 1 / requests, 5)
    expect(calls.pexpire).toBe(1)
    client.disconnect()
  })

  it('peeks in one round trip of 3 commands (EVALSHA, TIME, HMGET) that writes nothing', async () => {
    const client = new Redis(redis.url, { enableOfflineQueue: false })
    await new Promise((resolve) => client.once('ready', resolve))
    const limiter = createRedisLimiter({ client })
    await limiter.consume('peeked', limits)
    await limiter.peek('warm-up', limits)
    const before = await client.hgetall(limiter.keyFor('peeked'))
    await client.config('RESETSTAT')
    const peeks = 50
    for (let i = 0; i < peeks; i++)
      expect(await limiter.peek('peeked', limits)).toMatchObject({
        admitted: true,
        minute: { remaining: 59 },
        hour: { remaining: 999 },
      })
    const stats = await client.info('commandstats')
    const calls = Object.fromEntries(
      [...stats.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)].map((m) => [m[1], Number(m[2])]),
    )
    expect((calls.evalsha ?? 0) + (calls.eval ?? 0)).toBe(peeks)
    expect((calls.time ?? 0) + (calls.hmget ?? 0)).toBe(2 * peeks)
    expect(calls.hset ?? 0).toBe(0)
    expect(calls.pexpire ?? 0).toBe(0)
    expect(await client.hgetall(limiter.keyFor('peeked'))).toEqual(before)
    client.disconnect()
  })

  it('fails fast and closed while Redis is down, open when asked, and resumes with TTLs when it returns', async () => {
    const client = new Redis(redis.url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, retryStrategy: () => 50 })
    await new Promise((resolve) => client.once('ready', resolve))
    const store = new MemoryKeyStore({ tenants: [acme] })
    const errors: Error[] = []
    // Failing fast comes from the client's state, not from a deadline: the deadline only has to
    // cover the first call after the restart, which loads the script again (NOSCRIPT, then EVAL).
    const closed = createAuthenticator(store, {
      limiter: { backend: createRedisLimiter({ client }), timeoutMs: 2_000 },
      onError: (e) => errors.push(e),
    })
    const open = createAuthenticator(store, {
      limiter: { backend: createRedisLimiter({ client }), timeoutMs: 2_000 },
      failurePolicy: { limiter: 'open' },
    })
    const { key } = await closed.keys.create('t-acme', { label: 'agent' })
    expect((await closed.authenticate(request(key))).ok).toBe(true)

    await redis.stop()
    // Until the client has seen its socket close it still says "ready": calls fail on the dead socket
    // and then fast through the breaker. Wait for the close so that the loop below sees the outage.
    if (client.status === 'ready') await new Promise((resolve) => client.once('close', resolve))
    for (let i = 0; i < 20; i++) {
      expect(await closed.authenticate(request(key))).toMatchObject({
        ok: false,
        status: 503,
        code: 'service_unavailable',
      })
      expect(await open.authenticate(request(key))).toMatchObject({ ok: true, principal: { rateLimit: null } })
    }
    expect(errors.every((e) => e.name === 'SaikuStoreError')).toBe(true)

    await redis.start()
    // The client may have reconnected while the server was starting: wait only if it has not.
    if (client.status !== 'ready') await new Promise((resolve) => client.once('ready', resolve))
    const resumed = await closed.authenticate(request(key))
    expect(errors.slice(20), 'no failure after Redis returned').toEqual([])
    expect(resumed).toMatchObject({ ok: true, principal: { rateLimit: { minute: { remaining: 59 } } } })
    const keys = await client.keys('saiku:*')
    for (const name of keys) expect(await client.pttl(name)).toBeGreaterThan(0)
    closed.close()
    open.close()
    client.disconnect()
  })

  it.each([
    ['CLIENT PAUSE', (client: Redis) => client.call('CLIENT', 'PAUSE', '1500', 'ALL')],
    ['DEBUG SLEEP', (client: Redis) => client.call('DEBUG', 'SLEEP', '1.5')],
  ])('answers within the deadline while Redis is stalled by %s, with bounded pending work', async (_name, stall) => {
    const client = new Redis(redis.url, { enableOfflineQueue: false })
    await new Promise((resolve) => client.once('ready', resolve))
    const admin = new Redis(redis.url)
    const store = new MemoryKeyStore({ tenants: [acme] })
    const backend = createRedisLimiter({ client, maxPendingCalls: 20 })
    const errors: Error[] = []
    const auth = createAuthenticator(store, { limiter: { backend, timeoutMs: 100 }, onError: (e) => errors.push(e) })
    const { key } = await auth.keys.create('t-acme', { label: 'agent' })
    expect((await auth.authenticate(request(key))).ok).toBe(true)

    void stall(admin).catch(() => {})
    await new Promise((resolve) => setTimeout(resolve, 50))
    const decisions = await Promise.all(Array.from({ length: 50 }, () => auth.authenticate(request(key))))
    expect(decisions.every((d) => !d.ok && d.status === 503)).toBe(true)
    expect(backend.pendingCalls).toBeLessThanOrEqual(20)
    expect(errors.some((e) => (e as { timedOut?: boolean }).timedOut === true)).toBe(true)
    expect(errors.some((e) => e.message.includes('already pending'))).toBe(true)

    await new Promise((resolve) => setTimeout(resolve, 1_600))
    expect((await auth.authenticate(request(key))).ok).toBe(true)
    auth.close()
    admin.disconnect()
    client.disconnect()
  })
})
