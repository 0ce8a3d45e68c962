import { once } from 'node:events'
import { Cluster, Redis } from 'ioredis'
import type { KeyStore, SaikuOptions } from '@saiku/core'
import { createRedisChangeFeed, createRedisLimiter } from '@saiku/redis'

export interface RedisLimits {
  /** `saikuAuth(store, { limiter })`. */
  readonly limiter: NonNullable<SaikuOptions['limiter']>
  /** Stops the feed and closes both clients: call it on shutdown, or the open sockets keep the process alive. */
  close(): Promise<void>
}

/** Without an `error` listener, ioredis reports each failed reconnect as an unhandled error: one line per outage here. */
function logErrors(client: Redis | Cluster, name: string): void {
  let down = false
  client.on('error', (error: Error) => {
    if (!down) console.error(`${name}: ${error.message} (reconnecting)`)
    down = true
  })
  client.on('ready', () => {
    if (down) console.error(`${name}: connected again`)
    down = false
  })
}

async function limitsOn(
  client: Redis | Cluster,
  subscriber: Redis | Cluster,
  store: KeyStore,
): Promise<RedisLimits> {
  // quit() lets pending replies arrive; a client that is not connected is dropped at once.
  const closeClients = () =>
    Promise.all([client, subscriber].map((c) => c.quit().then(() => {}, () => c.disconnect())))
  try {
    await once(client, 'ready')
    const feed = await createRedisChangeFeed(store, { publisher: client, subscriber })
    return {
      limiter: { backend: createRedisLimiter({ client }) },
      close: async () => {
        await feed.close()
        await closeClients()
      },
    }
  } catch (error) {
    await closeClients() // a start-up that failed leaves no client reconnecting forever
    throw error
  }
}

/** One Redis: limits shared by every process, and revocations relayed between them. */
export function redisLimits(url: string, store: KeyStore): Promise<RedisLimits> {
  // No offline queue: while Redis is away a limiter call fails at once (503) instead of waiting.
  const redis = new Redis(url, { enableOfflineQueue: false })
  // The subscriber keeps its offline queue: it subscribes once, and again after each reconnect.
  const subscriber = redis.duplicate({ enableOfflineQueue: true })
  logErrors(redis, 'redis')
  logErrors(subscriber, 'redis subscriber')
  return limitsOn(redis, subscriber, store)
}

/** A Redis Cluster: the same, once the cluster is ready. */
export function redisClusterLimits(nodes: { host: string; port: number }[], store: KeyStore): Promise<RedisLimits> {
  const cluster = new Cluster(nodes, { enableOfflineQueue: false })
  const subscriber = new Cluster(nodes, { enableOfflineQueue: true })
  logErrors(cluster, 'redis cluster')
  logErrors(subscriber, 'redis cluster subscriber')
  return limitsOn(cluster, subscriber, store)
}
