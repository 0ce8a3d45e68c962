export {
  BATCH_SCRIPT,
  CONSUME_SCRIPT,
  createRedisLimiter,
  PEEK_SCRIPT,
  ROLLING_BATCH_SCRIPT,
  ROLLING_CONSUME_SCRIPT,
  ROLLING_PEEK_SCRIPT,
} from './limiter.js'
export type { RedisLimiterBackend, RedisLimiterOptions, RedisScriptClient } from './limiter.js'
export { createRedisChangeFeed } from './change-feed.js'
export type { RedisChangeFeed, RedisChangeFeedOptions, RedisPublisher, RedisSubscriber } from './change-feed.js'
