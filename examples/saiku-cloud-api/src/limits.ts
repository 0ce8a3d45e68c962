import { once } from 'node:events'
import type { MeterProvider } from '@opentelemetry/api'
import { Redis } from 'ioredis'
import { createMemoryLimiter, type KeyStore, type MemoryLimiterBackend, type SaikuOptions } from '@saiku/core'
import { createRedisChangeFeed, createRedisLimiter } from '@saiku/redis'

export interface LimiterSetup {
  readonly options: NonNullable<SaikuOptions['limiter']>
  readonly description: string
  /** Without Redis: the in-process limiter, whose day and month counts the server saves and loads. */
  readonly memory: MemoryLimiterBackend | null
  /** With Redis: records how many decisions each script call carried, as the histogram `saiku.limiter.batch_size`. */
  observeBatches(meterProvider: MeterProvider): void
  close(): Promise<void>
}

/** Batch sizes up to the limiter's default maximum, 128, in powers of two. */
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128]

/**
 * In memory by default; with REDIS_URL, in Redis, shared by every process, and
 * key revocations relayed between processes over Redis pub/sub.
 */
export async function createLimiter(redisUrl: string | undefined, store: KeyStore): Promise<LimiterSetup> {
  if (redisUrl === undefined) {
    const memory = createMemoryLimiter()
    return {
      options: { backend: memory },
      description: 'memory (this process only)',
      memory,
      observeBatches: () => {},
      close: async () => {},
    }
  }
  // No offline queue: while Redis is away a call fails at once instead of piling up. Auto-pipelining: what
  // the server asks of Redis in one turn besides the limiter's batch goes out in the same write.
  const client = new Redis(redisUrl, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 1_000,
    enableAutoPipelining: true,
  })
  const subscriber = client.duplicate({
    enableOfflineQueue: true,
    commandTimeout: undefined,
    enableAutoPipelining: false,
  })
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
  let recordBatch: ((decisions: number) => void) | undefined
  return {
    options: {
      backend: createRedisLimiter({ client, onBatch: (decisions) => recordBatch?.(decisions) }),
      timeoutMs: 1_000,
    },
    description: `Redis ${new URL(redisUrl).host}`,
    memory: null,
    observeBatches: (meterProvider) => {
      const histogram = meterProvider.getMeter('@saiku/redis').createHistogram('saiku.limiter.batch_size', {
        description: 'Decisions carried by each Redis script call of the limiter (those of one event-loop turn)',
        unit: '{decision}',
        advice: { explicitBucketBoundaries: BATCH_BUCKETS },
      })
      recordBatch = (decisions) => histogram.record(decisions)
    },
    close: async () => {
      await (feed ?? (await feedStarting.catch(() => undefined)))?.close()
      client.disconnect()
      subscriber.disconnect()
    },
  }
}
