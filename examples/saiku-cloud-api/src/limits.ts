import { Redis } from 'ioredis'
import { RateLimiterRedis } from 'rate-limiter-flexible'
import type { SaikuOptions } from '@saiku/core'

export interface LimiterSetup {
  readonly options: SaikuOptions['limiter']
  readonly description: string
  close(): Promise<void>
}

/** In memory by default; in Redis, shared by every process, when REDIS_URL is set. */
export function createLimiter(redisUrl: string | undefined): LimiterSetup {
  if (redisUrl === undefined) return { options: {}, description: 'memory (this process only)', close: async () => {} }
  // No offline queue: while Redis is away a call fails at once instead of piling up.
  const redis = new Redis(redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: false })
  redis.on('error', () => {})
  return {
    options: { factory: (options) => new RateLimiterRedis({ storeClient: redis, ...options }) },
    description: `Redis ${new URL(redisUrl).host}`,
    close: async () => {
      redis.disconnect()
    },
  }
}
