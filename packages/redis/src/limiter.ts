import type { Cluster, Redis, Result } from 'ioredis'
import { createNodeBreaker } from './breaker.js'
import { SaikuStoreError, type LimitDecision, type LimiterBackend, type WindowLimits, type WindowState } from '@saiku/core'

/**
 * Both windows of one tenant live in one hash, `<prefix>:{<tenantKey>}`, and one
 * script decides them: read both, admit only if both have room, then count in
 * both. A refused request writes nothing. Time comes from the Redis server, so
 * every process shares one clock. The hash always carries the hour's TTL.
 *
 * Fields: ms/mc = minute window start (ms) and count, hs/hc = the same for the hour.
 */
export const CONSUME_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 'ms', 'mc', 'hs', 'hc')
local minuteLimit, hourLimit = tonumber(ARGV[1]), tonumber(ARGV[2])
local minuteMs, hourMs = tonumber(ARGV[3]), tonumber(ARGV[4])
local ms, mc, hs, hc = tonumber(v[1]), tonumber(v[2]) or 0, tonumber(v[3]), tonumber(v[4]) or 0
if ms == nil or now >= ms + minuteMs or now < ms then ms = now; mc = 0 end
local newHour = false
if hs == nil or now >= hs + hourMs or now < hs then hs = now; hc = 0; newHour = true end
local admitted = 0
if mc < minuteLimit and hc < hourLimit then
  admitted = 1
  mc = mc + 1
  hc = hc + 1
  redis.call('HSET', KEYS[1], 'ms', ms, 'mc', mc, 'hs', hs, 'hc', hc)
  if newHour then redis.call('PEXPIRE', KEYS[1], hourMs) end
end
return {admitted, mc, ms + minuteMs - now, hc, hs + hourMs - now}
`

type ConsumeReply = [admitted: number, minuteCount: number, minuteResetMs: number, hourCount: number, hourResetMs: number]

declare module 'ioredis' {
  interface RedisCommander<Context> {
    saikuConsume(key: string, minuteLimit: number, hourLimit: number, minuteMs: number, hourMs: number): Result<ConsumeReply, Context>
  }
}

export interface RedisLimiterOptions {
  /** An ioredis client or cluster. Give it `enableOfflineQueue: false` so calls fail at once while it is disconnected. */
  readonly client: Redis | Cluster
  /** Default `"saiku"`. */
  readonly keyPrefix?: string
  /**
   * Calls this process may have waiting on Redis at once; beyond it a call fails
   * at once instead of queueing (a paused Redis must not pile up work). Default 1000.
   */
  readonly maxPendingCalls?: number
  /**
   * A call that has not answered within this time marks its node as down: for
   * `nodeDownPauseMs`, calls for that node's tenants fail at once (503 or your policy)
   * instead of each waiting out `limiter.timeoutMs`; tenants on other nodes are not
   * affected. Then one call goes through to see whether the node is back. Default 500.
   */
  readonly nodeDownAfterMs?: number
  /** How long calls to a node known to be down fail at once before one tries again. Default 1000. */
  readonly nodeDownPauseMs?: number
}

export interface RedisLimiterBackend extends LimiterBackend {
  /** The Redis key that holds a tenant's windows. */
  keyFor(tenantKey: string): string
  readonly pendingCalls: number
}

function state(window: 'minute' | 'hour', limit: number, count: number, resetMs: number): WindowState {
  return { window, limit, remaining: Math.max(0, limit - count), resetMs: Math.max(1, resetMs) }
}

/** The Redis backend: one round trip (EVALSHA) per request decides both windows, all or nothing. */
export function createRedisLimiter(options: RedisLimiterOptions): RedisLimiterBackend {
  const { client } = options
  const prefix = options.keyPrefix ?? 'saiku'
  const maxPendingCalls = options.maxPendingCalls ?? 1_000
  // defineCommand sends EVALSHA and falls back to EVAL once when the script cache was flushed.
  if (typeof (client as { saikuConsume?: unknown }).saikuConsume !== 'function') {
    client.defineCommand('saikuConsume', { numberOfKeys: 1, lua: CONSUME_SCRIPT })
  }
  let pending = 0
  const nodeDownAfterMs = options.nodeDownAfterMs ?? 500
  const breaker = createNodeBreaker(client, options.nodeDownPauseMs ?? 1_000)
  // The hash tag keeps every key of a tenant in one Cluster slot.
  const keyFor = (tenantKey: string): string => `${prefix}:{${tenantKey}}`

  return {
    keyFor,
    get pendingCalls() {
      return pending
    },
    async consume(tenantKey: string, limits: WindowLimits): Promise<LimitDecision> {
      if (client.status !== 'ready') throw new SaikuStoreError('limiter', `Redis is not connected (${client.status})`)
      if (pending >= maxPendingCalls) throw new SaikuStoreError('limiter', `${pending} Redis calls already pending`)
      const key = keyFor(tenantKey)
      const node = breaker.nodeOf(key)
      if (!breaker.allow(node, Date.now())) throw new SaikuStoreError('limiter', `Redis node ${node} is down; failing fast`)
      pending++
      let reply: ConsumeReply
      // Slow enough to count as down: later calls for this node fail fast, this one still waits for its answer.
      const slow = setTimeout(() => breaker.failed(node, Date.now()), nodeDownAfterMs)
      slow.unref?.()
      try {
        reply = await client.saikuConsume(key, limits.perMinute, limits.perHour, 60_000, 3_600_000)
        breaker.succeeded(node)
      } catch (error) {
        breaker.failed(node, Date.now())
        throw new SaikuStoreError('limiter', 'Redis rate limit script failed', { cause: error })
      } finally {
        clearTimeout(slow)
        pending--
      }
      const [admitted, minuteCount, minuteResetMs, hourCount, hourResetMs] = reply
      const minute = state('minute', limits.perMinute, minuteCount, minuteResetMs)
      const hour = state('hour', limits.perHour, hourCount, hourResetMs)
      if (admitted === 1) return { admitted: true, minute, hour, retryAfterMs: 0 }
      const minuteSpent = minute.remaining === 0
      const hourSpent = hour.remaining === 0
      const retryAfterMs = Math.max(minuteSpent ? minute.resetMs : 0, hourSpent ? hour.resetMs : 0)
      return { admitted: false, minute, hour, retryAfterMs }
    },
  }
}
