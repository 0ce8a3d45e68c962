export { CONSUME_SCRIPT, createRedisLimiter, PEEK_SCRIPT } from './limiter.js'
export type { RedisLimiterBackend, RedisLimiterOptions } from './limiter.js'
export { createRedisChangeFeed } from './changes.js'
export type { RedisChangeFeed, RedisChangeFeedOptions } from './changes.js'
