import { once } from 'node:events'
import { Redis } from 'ioredis'
import { createMemoryLimiter, type KeyStore, type MemoryLimiterBackend, type SaikuOptions } from '@saiku/core'
import { createRedisChangeFeed, createRedisLimiter } from '@saiku/redis'

export interface LimiterSetup {
  readonly options: NonNullable<SaikuOptions['limiter']>
  readonly description: string
  /** Without Redis: the in-process limiter, whose day and month counts the server saves and loads. */
  readonly memory: MemoryLimiterBackend | null
  close(): Promise<void>
}

/**
 * In memory by default; with REDIS_URL, in Redis, shared by every process, and
 * key revocations relayed between processes over Redis pub/sub.
 */
export async function createLimiter(redisUrl: string | undefined, store: KeyStore): Promise<LimiterSetup> {
  if (redisUrl === undefined) {
    const memory = createMemoryLimiter()
    return { options: { backend: memory }, description: 'memory (this process only)', memory, close: async () => {} }
  }
  // No offline queue: while Redis is away a call fails at once instead of piling up.
  const client = new Redis(redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 1_000 })
  const subscriber = client.duplicate({ enableOfflineQueue: true, commandTimeout: undefined })
  client.on('error', () => {})
  subscriber.on('error', () => {})
  // Start even when Redis is away: requests then get the failure policy until it is back.
  const within = <T>(promise: Promise<T>): Promise<T | undefined> =>
    Promise.race([
      promise.catch(() => undefined),
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 5_000).unref()),
    ])
  await within(once(client, 'ready'))
  const feedStarting = createRedisChangeFeed(store, { publisher: client, subscriber })
  const feed = await within(feedStarting)
  return {
    options: { backend: createRedisLimiter({ client }), timeoutMs: 1_000 },
    description: `Redis ${new URL(redisUrl).host}`,
    memory: null,
    close: async () => {
      await (feed ?? (await feedStarting.catch(() => undefined)))?.close()
      client.disconnect()
      subscriber.disconnect()
    },
  }
}
