// @saiku/core/rate-limiter-flexible: counting through any rate-limiter-flexible store (`limiter.factory`).

export { createRateLimiterBackend } from '../rate-limiter-flexible.js'
export type {
  RateLimiterBackendOptions,
  RateLimiterFactory,
  RateLimiterFactoryOptions,
} from '../rate-limiter-flexible.js'
