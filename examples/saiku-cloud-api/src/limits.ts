import { once } from 'node:events'
import { Redis } from 'ioredis'
import type { KeyStore, SaikuOptions } from '@saiku/core'
import { createRedisChangeFeed, createRedisLimiter } from '@saiku/redis'

export interface LimiterSetup {
  readonly options: NonNullable<SaikuOptions['limiter']>
  readonly description: string
  close(): Promise<void>
}

/**
 * In memory by default; with REDIS_URL, in Redis, shared by every process, and
 * key revocations relayed between processes over Redis pub/sub.
 */
export async function createLimiter(redisUrl: string | undefined, store: KeyStore): Promise<LimiterSetup> {
  if (redisUrl === undefined) return { options: {}, description: 'memory (this process only)', close: async () => {} }
  // No offline queue: while Redis is away a call fails at once instead of piling up.
  const client = new Redis(redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 1_000 })
  const subscriber = client.duplicate({ enableOfflineQueue: true, commandTimeout: undefined })
  client.on('error', () => {})
  subscriber.on('error', () => {})
  await Promise.race([once(client, 'ready'), new Promise((resolve) => setTimeout(resolve, 5_000))])
  const feed = await createRedisChangeFeed(store, { publisher: client, subscriber })
  return {
    options: { backend: createRedisLimiter({ client }), timeoutMs: 1_000 },
    description: `Redis ${new URL(redisUrl).host}`,
    close: async () => {
      await feed.close()
      client.disconnect()
      subscriber.disconnect()
    },
  }
}
