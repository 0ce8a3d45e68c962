import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createAuthenticator, MemoryKeyStore, monthWindowAt, type WindowLimits } from '@saiku/core'
import { freePort, hasRedisServerBinary } from '@saiku/test-support/services'
import { createRedisLimiter } from './limiter.js'

// A month's count must survive Redis restarting: these tests run a redis-server of their own with the
// append-only file on (fsync on every write), stop or kill it, start it again on the same directory,
// and find every admitted request still counted.

/** A redis-server on a free loopback port whose data lives in `dir`, across restarts. */
class PersistentRedis {
  private child: ChildProcess | undefined
  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  static async create(): Promise<PersistentRedis> {
    const server = new PersistentRedis(mkdtempSync(join(tmpdir(), 'saiku-aof-')), await freePort())
    await server.start()
    return server
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async start(): Promise<void> {
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--dir',
        this.dir,
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--save',
        '',
      ],
      { stdio: 'ignore' },
    )
    this.child = child
    const probe = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    probe.on('error', () => {})
    const deadline = Date.now() + 15_000
    try {
      for (;;) {
        if (child.exitCode !== null) throw new Error(`redis-server on ${this.port} exited with ${child.exitCode}`)
        try {
          if (probe.status !== 'ready') await probe.connect()
          // Loading the append-only file answers LOADING until it is done.
          if ((await probe.ping()) === 'PONG') return
        } catch {
          probe.disconnect()
        }
        if (Date.now() > deadline) throw new Error(`redis-server on ${this.port} did not start`)
        await new Promise((resolve) => setTimeout(resolve, 25))
      }
    } finally {
      probe.disconnect()
    }
  }

  /** SIGTERM: Redis flushes the append-only file and exits. SIGKILL: a crash. */
  async stop(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    const child = this.child
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill(signal)
    await exited
    this.child = undefined
  }

  async remove(): Promise<void> {
    await this.stop('SIGKILL')
    rmSync(this.dir, { recursive: true, force: true })
  }
}

/** A client as the README advises: calls fail at once while it is disconnected, and it keeps reconnecting. */
function clientOf(url: string): Redis {
  const client = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 1, retryStrategy: () => 50 })
  client.on('error', () => {})
  return client
}

async function ready(client: Redis): Promise<void> {
  const deadline = Date.now() + 15_000
  while (client.status !== 'ready') {
    if (Date.now() > deadline) throw new Error(`the client is still ${client.status}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** An anchor day far from today's date, so that no month edge falls within the test, whenever it runs. */
function anchorAwayFromToday(): number {
  return ((new Date().getUTCDate() + 13) % 28) + 1
}

describe.skipIf(!hasRedisServerBinary())('month counts across Redis restarts (append-only file, fsync always)', () => {
  let redis: PersistentRedis
  const clients: Redis[] = []
  beforeEach(async () => {
    redis = await PersistentRedis.create()
  })
  afterEach(async () => {
    for (const client of clients.splice(0)) client.disconnect()
    await redis?.remove()
  })

  it('finds a month’s count exact after a graceful restart, and the key’s TTL reaches the month’s end', async () => {
    const client = clientOf(redis.url)
    clients.push(client)
    await ready(client)
    const limiter = createRedisLimiter({ client })
    const limits: WindowLimits = {
      perMinute: 1_000,
      perHour: 10_000,
      perMonth: 100,
      monthStartDay: anchorAwayFromToday(),
    }
    for (let i = 0; i < 12; i++) expect((await limiter.consume('acme', limits, 3)).admitted).toBe(true)
    const before = await limiter.peek('acme', limits)
    expect(before.month).toMatchObject({ used: 36, remaining: 64 })

    await redis.stop('SIGTERM')
    await redis.start()
    await ready(client)

    const after = await limiter.peek('acme', limits)
    expect(after.month).toMatchObject({ used: 36, remaining: 64 })
    const monthEndMs = monthWindowAt(limits.monthStartDay!, Date.now()).endMs
    const ttl = await client.pttl(limiter.keyFor('acme'))
    // The key ends with the month (Redis and this process share the host's clock), not with the minute or hour.
    expect(ttl).toBeGreaterThan(monthEndMs - Date.now() - 60_000)
    expect(ttl).toBeLessThanOrEqual(monthEndMs - Date.now() + 1_000)
    expect(after.month!.resetMs).toBeGreaterThan(monthEndMs - Date.now() - 60_000)
    // Counting goes on from there: 64 left, then refused with Retry-After at the month's end.
    expect(await limiter.consume('acme', limits, 64)).toMatchObject({ admitted: true, month: { remaining: 0 } })
    const refused = await limiter.consume('acme', limits)
    expect(refused).toMatchObject({ admitted: false, month: { used: 100 } })
    expect(refused.retryAfterMs).toBe(refused.month!.resetMs)
  }, 60_000)

  it('loses no admitted request when Redis is killed mid-traffic: the outage fails closed, the count is exact after', async () => {
    const client = clientOf(redis.url)
    clients.push(client)
    await ready(client)
    const backend = createRedisLimiter({ client })
    const limits: WindowLimits = {
      perMinute: 100_000,
      perHour: 1_000_000,
      perDay: 1_000_000,
      perMonth: 1_000_000,
      monthStartDay: anchorAwayFromToday(),
    }
    const store = new MemoryKeyStore({
      tenants: [
        {
          tenantId: 't-acme',
          tenantSlug: 'acme',
          tier: 'metered',
          connectionName: 'w',
          subscription: { status: 'active' },
        },
      ],
      tiers: { metered: limits },
    })
    const errors: Error[] = []
    const auth = createAuthenticator(store, {
      tiers: { metered: limits },
      limiter: { backend, timeoutMs: 2_000 },
      onError: (error) => errors.push(error),
    })
    const { key } = await auth.keys.create('t-acme', { label: 'agent' })
    const request = { headers: { authorization: `Bearer ${key}` }, method: 'GET', url: '/me/tenant' }

    // Eight clients send at once; Redis is killed while their requests are in flight.
    let admitted = 0
    let failed = 0
    let outage = false
    let inFlightAtKill = 0
    let inFlight = 0
    const statuses = new Map<number, number>()
    const sender = async () => {
      for (let i = 0; i < 40; i++) {
        inFlight++
        const decision = await auth.authenticate(request)
        inFlight--
        if (decision.ok) admitted++
        else {
          failed++
          statuses.set(decision.status, (statuses.get(decision.status) ?? 0) + 1)
        }
        if (outage) await new Promise((resolve) => setTimeout(resolve, 5))
      }
    }
    const killer = async () => {
      while (admitted < 100) await new Promise((resolve) => setTimeout(resolve, 1))
      outage = true
      inFlightAtKill = inFlight
      await redis.stop('SIGKILL')
      // Requests keep coming for a while with Redis gone.
      await new Promise((resolve) => setTimeout(resolve, 300))
      await redis.start()
      outage = false
    }
    await Promise.all([killer(), ...Array.from({ length: 8 }, sender)])
    await ready(client)
    // After the restart every client is admitted again, the count going on from what the file kept.
    for (let i = 0; i < 20; i++) {
      const decision = await auth.authenticate(request)
      expect(decision.ok, 'admitted once Redis is back').toBe(true)
      admitted++
    }

    expect(admitted + failed).toBe(8 * 40 + 20)
    expect(failed).toBeGreaterThan(0)
    // The outage took the limiter's failure path: 503, never a 429 or a 401, each error a store error.
    expect([...statuses.keys()]).toEqual([503])
    expect(errors.every((error) => error.name === 'SaikuStoreError')).toBe(true)
    const counted = await backend.peek('t-acme', limits)
    // A request in flight at the kill may have been written and fsynced without its answer reaching us;
    // every request answered "admitted" is in the file.
    for (const window of [counted.minute, counted.hour, counted.day!, counted.month!]) {
      expect(window.used).toBeGreaterThanOrEqual(admitted)
      expect(window.used).toBeLessThanOrEqual(admitted + inFlightAtKill)
    }
    auth.close()
  }, 60_000)

  it('counts exactly across a kill between requests: the file has every admitted request and nothing else', async () => {
    const client = clientOf(redis.url)
    clients.push(client)
    await ready(client)
    const limiter = createRedisLimiter({ client })
    const limits: WindowLimits = {
      perMinute: 1_000,
      perHour: 10_000,
      perMonth: 50,
      monthStartDay: anchorAwayFromToday(),
    }
    let admitted = 0
    for (let i = 0; i < 30; i++) if ((await limiter.consume('acme', limits)).admitted) admitted++
    await redis.stop('SIGKILL')
    await new Promise((resolve) => setTimeout(resolve, 100))
    await expect(limiter.consume('acme', limits)).rejects.toMatchObject({ name: 'SaikuStoreError' })
    await redis.start()
    await ready(client)
    for (let i = 0; i < 30; i++) if ((await limiter.consume('acme', limits)).admitted) admitted++
    expect(admitted).toBe(50)
    expect((await limiter.peek('acme', limits)).month).toMatchObject({ used: 50, remaining: 0 })
  }, 60_000)
})
