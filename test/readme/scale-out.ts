import { once } from 'node:events'
import { Redis } from 'ioredis'
import pg from 'pg'
import { saikuAuth, type SaikuMiddleware } from '@saiku/express'
import { PostgresKeyStore } from '@saiku/postgres'
import { createRedisLimiter } from '@saiku/redis'

/** Keys in PostgreSQL, limits in Redis: what every process behind one load balancer shares. */
export async function sharedAuth(
  databaseUrl: string,
  redisUrl: string,
): Promise<{ auth: SaikuMiddleware; close(): Promise<void> }> {
  const pool = new pg.Pool({ connectionString: databaseUrl }) // ?schema=NAME puts the tables in that schema
  const store = new PostgresKeyStore({ pool }) // migrates on first use; LISTEN/NOTIFY relays revocations between processes
  const redis = new Redis(redisUrl, { enableOfflineQueue: false }) // while Redis is away: a 503 at once, no queue
  redis.on('error', (error: Error) => console.error(`redis: ${error.message}`)) // else each failed reconnect is unhandled
  await once(redis, 'ready') // serve once the limits can be counted
  const auth = saikuAuth(store, { limiter: { backend: createRedisLimiter({ client: redis }) } })
  const close = async () => {
    auth.authenticator.close()
    await store.close()
    await Promise.all([redis.quit(), pool.end()])
  }
  return { auth, close }
}
