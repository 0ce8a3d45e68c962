import { once } from 'node:events'
import { Cluster, Redis } from 'ioredis'
import type { KeyStore, SaikuOptions } from '@saiku/core'
import { createRedisChangeFeed, createRedisLimiter } from '@saiku/redis'

type LimiterOptions = NonNullable<SaikuOptions['limiter']>

/** One Redis: limits shared by every process, and revocations relayed between them. */
export async function redisLimits(url: string, store: KeyStore): Promise<LimiterOptions> {
  // No offline queue: while Redis is away a limiter call fails at once (503) instead of waiting.
  const redis = new Redis(url, { enableOfflineQueue: false })
  await once(redis, 'ready')
  // The subscriber keeps its offline queue: it subscribes once, and again after each reconnect.
  const subscriber = redis.duplicate({ enableOfflineQueue: true })
  await createRedisChangeFeed(store, { publisher: redis, subscriber })
  return { backend: createRedisLimiter({ client: redis }) }
}

/** A Redis Cluster: the same, once the cluster is ready. */
export async function redisClusterLimits(nodes: { host: string; port: number }[], store: KeyStore): Promise<LimiterOptions> {
  const cluster = new Cluster(nodes, { enableOfflineQueue: false })
  await once(cluster, 'ready')
  const subscriber = new Cluster(nodes, { enableOfflineQueue: true })
  await createRedisChangeFeed(store, { publisher: cluster, subscriber })
  return { backend: createRedisLimiter({ client: cluster }) }
}
