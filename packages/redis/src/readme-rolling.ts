import type { Redis } from 'ioredis'
import type { SaikuOptions } from '@saiku/core'
import { createRedisLimiter } from '@saiku/redis'

/** Rolling windows in Redis: the authenticator's option and the backend's must agree. */
export function rollingRedisOptions(redis: Redis): SaikuOptions {
  return { windows: 'rolling', limiter: { backend: createRedisLimiter({ client: redis, windows: 'rolling' }) } }
}
