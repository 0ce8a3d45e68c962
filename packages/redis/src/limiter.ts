import { createNodeBreaker } from './breaker.js'
import { SaikuStoreError, type LimitDecision, type LimiterBackend, type WindowLimits, type WindowState } from '@saiku/core'

/**
 * Both windows of one tenant live in one hash, `<prefix>:{<tenantKey>}`, and one
 * script decides them: read both, admit only if both have room, then count in
 * both. A refused request writes nothing. Each window starts at the first
 * request admitted after the previous one ended and lasts its length, whatever
 * the other does; a clock that steps back keeps the counts. Time comes from the
 * Redis server, so every process shares one clock. The hash's TTL is set whenever
 * a window starts and covers whichever window ends later.
 *
 * Fields: ms/mc = minute window start (ms) and count, hs/hc = the same for the hour.
 * ARGV: minute limit, hour limit, minute length, hour length, cost (units taken from
 * both windows, or none), and in tests the time. The reply says which windows lack
 * room for the cost, so Retry-After waits for exactly those.
 */
const DECIDE = `
local v = redis.call('HMGET', KEYS[1], 'ms', 'mc', 'hs', 'hc')
local minuteLimit, hourLimit = tonumber(ARGV[1]), tonumber(ARGV[2])
local minuteMs, hourMs = tonumber(ARGV[3]), tonumber(ARGV[4])
local cost = tonumber(ARGV[5]) or 1
local ms, mc, hs, hc = tonumber(v[1]), tonumber(v[2]) or 0, tonumber(v[3]), tonumber(v[4]) or 0
local newMinute, newHour = false, false
if ms == nil or now >= ms + minuteMs then ms = now; mc = 0; newMinute = true end
if hs == nil or now >= hs + hourMs then hs = now; hc = 0; newHour = true end
local admitted = 0
if mc + cost <= minuteLimit and hc + cost <= hourLimit then admitted = 1 end
`

const COUNT = `
if admitted == 1 then
  mc = mc + cost
  hc = hc + cost
  redis.call('HSET', KEYS[1], 'ms', ms, 'mc', mc, 'hs', hs, 'hc', hc)
  if newMinute or newHour then redis.call('PEXPIRE', KEYS[1], math.max(ms + minuteMs, hs + hourMs) - now) end
end
`

const REPLY = `
local minuteShort, hourShort = 0, 0
if mc + cost > minuteLimit then minuteShort = 1 end
if hc + cost > hourLimit then hourShort = 1 end
if admitted == 1 then minuteShort = 0; hourShort = 0 end
return {admitted, mc, ms + minuteMs - now, hc, hs + hourMs - now, minuteShort, hourShort}
`

const SERVER_TIME = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// Tests only: the time is the last argument, so windows can be driven across their edges.
const GIVEN_TIME = `
local now = tonumber(ARGV[6])
`

/** Counts a request's cost if both windows have room for it; replies with the decision and both windows. */
export const CONSUME_SCRIPT: string = SERVER_TIME + DECIDE + COUNT + REPLY
/** The same reply, writing nothing: what a request would be told now. */
export const PEEK_SCRIPT: string = SERVER_TIME + DECIDE + REPLY

/** @internal The scripts with the time given by the caller instead of read from the server. */
export const GIVEN_TIME_SCRIPTS: { readonly consume: string; readonly peek: string } = { consume: GIVEN_TIME + DECIDE + COUNT + REPLY, peek: GIVEN_TIME + DECIDE + REPLY }

type ConsumeReply = [admitted: number, minuteCount: number, minuteResetMs: number, hourCount: number, hourResetMs: number, minuteShort: number, hourShort: number]

/**
 * What the limiter needs of a client: an ioredis 5 or 6 `Redis` or `Cluster`
 * (any reply mapping) fits, without this package depending on ioredis's types.
 */
export interface RedisScriptClient {
  /** `"ready"` while connected. */
  readonly status: string
  on(event: 'ready', listener: () => void): unknown
  defineCommand(name: string, definition: { lua: string; numberOfKeys?: number }): void
}

interface WithScripts {
  saikuConsume(key: string, minuteLimit: number, hourLimit: number, minuteMs: number, hourMs: number, cost: number): Promise<ConsumeReply>
  saikuPeek(key: string, minuteLimit: number, hourLimit: number, minuteMs: number, hourMs: number, cost: number): Promise<ConsumeReply>
}

export interface RedisLimiterOptions {
  /** An ioredis client or cluster. Give it `enableOfflineQueue: false` so calls fail at once while it is disconnected. */
  readonly client: RedisScriptClient
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
  /** What a request would be told now, without counting it: one round trip that writes nothing. */
  peek(tenantKey: string, limits: WindowLimits): Promise<LimitDecision>
  readonly pendingCalls: number
}

function state(window: 'minute' | 'hour', limit: number, count: number, resetMs: number): WindowState {
  return { window, limit, remaining: Math.max(0, limit - count), resetMs: Math.max(1, resetMs) }
}

function toDecision(reply: ConsumeReply, limits: WindowLimits): LimitDecision {
  const [admitted, minuteCount, minuteResetMs, hourCount, hourResetMs, minuteShort, hourShort] = reply
  const minute = state('minute', limits.perMinute, minuteCount, minuteResetMs)
  const hour = state('hour', limits.perHour, hourCount, hourResetMs)
  if (admitted === 1) return { admitted: true, minute, hour, retryAfterMs: 0 }
  const retryAfterMs = Math.max(minuteShort === 1 ? minute.resetMs : 0, hourShort === 1 ? hour.resetMs : 0)
  return { admitted: false, minute, hour, retryAfterMs }
}

type Script = (client: RedisScriptClient & WithScripts, key: string, limits: WindowLimits, cost: number) => Promise<ConsumeReply>

function build(options: RedisLimiterOptions, consumeScript: Script, peekScript: Script): RedisLimiterBackend {
  const { client } = options
  const prefix = options.keyPrefix ?? 'saiku'
  const maxPendingCalls = options.maxPendingCalls ?? 1_000
  let pending = 0
  const nodeDownAfterMs = options.nodeDownAfterMs ?? 500
  const breaker = createNodeBreaker(client, options.nodeDownPauseMs ?? 1_000)
  // The hash tag keeps every key of a tenant in one Cluster slot.
  const keyFor = (tenantKey: string): string => `${prefix}:{${tenantKey}}`

  async function run(script: Script, tenantKey: string, limits: WindowLimits, cost: number): Promise<LimitDecision> {
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
      reply = await script(client as RedisScriptClient & WithScripts, key, limits, cost)
      breaker.succeeded(node)
    } catch (error) {
      breaker.failed(node, Date.now())
      throw new SaikuStoreError('limiter', 'Redis rate limit script failed', { cause: error })
    } finally {
      clearTimeout(slow)
      pending--
    }
    return toDecision(reply, limits)
  }

  return {
    keyFor,
    get pendingCalls() {
      return pending
    },
    consume: (tenantKey, limits, cost = 1) => run(consumeScript, tenantKey, limits, cost),
    peek: (tenantKey, limits) => run(peekScript, tenantKey, limits, 1),
  }
}

/** The Redis backend: one round trip (EVALSHA) per request decides both windows, all or nothing. */
export function createRedisLimiter(options: RedisLimiterOptions): RedisLimiterBackend {
  const { client } = options
  // defineCommand sends EVALSHA and falls back to EVAL once when the script cache was flushed.
  if (typeof (client as { saikuConsume?: unknown }).saikuConsume !== 'function') {
    client.defineCommand('saikuConsume', { numberOfKeys: 1, lua: CONSUME_SCRIPT })
  }
  if (typeof (client as { saikuPeek?: unknown }).saikuPeek !== 'function') {
    client.defineCommand('saikuPeek', { numberOfKeys: 1, lua: PEEK_SCRIPT })
  }
  return build(
    options,
    (redis, key, limits, cost) => redis.saikuConsume(key, limits.perMinute, limits.perHour, 60_000, 3_600_000, cost),
    (redis, key, limits, cost) => redis.saikuPeek(key, limits.perMinute, limits.perHour, 60_000, 3_600_000, cost),
  )
}

/**
 * @internal For tests: the same backend, with the time passed to the scripts by
 * `now()` instead of read with `TIME`, and optionally shorter windows.
 */
export function createRedisLimiterAt(
  options: RedisLimiterOptions & { readonly now: () => number; readonly minuteMs?: number; readonly hourMs?: number },
): RedisLimiterBackend {
  const { client, now } = options
  const minuteMs = options.minuteMs ?? 60_000
  const hourMs = options.hourMs ?? 3_600_000
  const given = client as unknown as Record<string, (...args: (string | number)[]) => Promise<ConsumeReply>>
  if (typeof given.saikuConsumeAt !== 'function') client.defineCommand('saikuConsumeAt', { numberOfKeys: 1, lua: GIVEN_TIME_SCRIPTS.consume })
  if (typeof given.saikuPeekAt !== 'function') client.defineCommand('saikuPeekAt', { numberOfKeys: 1, lua: GIVEN_TIME_SCRIPTS.peek })
  return build(
    options,
    (_redis, key, limits, cost) => given.saikuConsumeAt!(key, limits.perMinute, limits.perHour, minuteMs, hourMs, cost, now()),
    (_redis, key, limits, cost) => given.saikuPeekAt!(key, limits.perMinute, limits.perHour, minuteMs, hourMs, cost, now()),
  )
}
