import { nodeBreakerFor } from './breaker.js'
import {
  SaikuConfigError,
  SaikuStoreError,
  type LimitDecision,
  type LimiterBackend,
  type WindowLimits,
  type WindowState,
} from '@saiku/core'

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

/**
 * Rolling windows (see the core's \`rolling.ts\`): each window is cut into 10
 * sub-windows aligned on the epoch, and a request counts against its sub-window
 * and the 10 before it. Fields: mi/hi = the newest sub-window counted of each
 * window, m0..m10 / h0..h10 = the counts of the 11 sub-windows (index mod 11).
 * A request is admitted only if both have room for its cost, then counted in
 * both; a refused request writes nothing. The reply has the fixed windows' shape:
 * what each window counts, and until when — for a window short of room the wait
 * until it has room, else until everything it counts has dropped out.
 */
const ROLLING_DECIDE = `
local K = 10
local minuteLimit, hourLimit = tonumber(ARGV[1]), tonumber(ARGV[2])
local minuteMs, hourMs = tonumber(ARGV[3]), tonumber(ARGV[4])
local cost = tonumber(ARGV[5]) or 1
local names = {'mi', 'hi'}
for s = 0, K do names[#names + 1] = 'm' .. s; names[#names + 1] = 'h' .. s end
local v = redis.call('HMGET', KEYS[1], unpack(names))
local function load(last, offset, width)
  local w = {last = tonumber(last), width = width, counts = {}}
  for s = 0, K do w.counts[s] = tonumber(v[offset + 2 * s]) or 0 end
  w.index = math.floor(now / width)
  if w.last ~= nil and w.last > w.index then w.index = w.last end
  return w
end
local minute = load(v[1], 3, minuteMs / K)
local hour = load(v[2], 4, hourMs / K)
local function sumFrom(w, from)
  if w.last == nil then return 0 end
  local total = 0
  for i = math.max(from, w.last - K), w.last do total = total + w.counts[i % (K + 1)] end
  return total
end
local function wait(w, limit)
  if sumFrom(w, w.index - K) + cost <= limit then return 0 end
  for step = 1, K do
    if sumFrom(w, w.index - K + step) + cost <= limit then return (w.index + step) * w.width - now end
  end
  return (w.index + K + 1) * w.width - now
end
local function fullReset(w, length)
  if w.last == nil then return length end
  for i = w.last, math.max(w.index - K, w.last - K), -1 do
    if w.counts[i % (K + 1)] > 0 then return (i + K + 1) * w.width - now end
  end
  return length
end
local minuteWait, hourWait = wait(minute, minuteLimit), wait(hour, hourLimit)
local admitted = 0
if minuteWait == 0 and hourWait == 0 then admitted = 1 end
`

const ROLLING_COUNT = `
if admitted == 1 then
  local fields = {}
  for _, pair in ipairs({{minute, 'm'}, {hour, 'h'}}) do
    local w, p = pair[1], pair[2]
    if w.last == nil or w.index - w.last > K then
      for s = 0, K do w.counts[s] = 0 end
    else
      for i = w.last + 1, w.index do w.counts[i % (K + 1)] = 0 end
    end
    w.last = w.index
    w.counts[w.index % (K + 1)] = w.counts[w.index % (K + 1)] + cost
    fields[#fields + 1] = p .. 'i'; fields[#fields + 1] = w.last
    for s = 0, K do fields[#fields + 1] = p .. s; fields[#fields + 1] = w.counts[s] end
  end
  redis.call('HSET', KEYS[1], unpack(fields))
  redis.call('PEXPIRE', KEYS[1], math.max(fullReset(minute, minuteMs), fullReset(hour, hourMs)))
end
`

const ROLLING_REPLY = `
local minuteShort, hourShort = 0, 0
local minuteReset, hourReset = minuteWait, hourWait
if minuteWait > 0 then minuteShort = 1 else minuteReset = fullReset(minute, minuteMs) end
if hourWait > 0 then hourShort = 1 else hourReset = fullReset(hour, hourMs) end
return {admitted, sumFrom(minute, minute.index - K), minuteReset, sumFrom(hour, hour.index - K), hourReset, minuteShort, hourShort}
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

/** The same two, for rolling windows. */
export const ROLLING_CONSUME_SCRIPT: string = SERVER_TIME + ROLLING_DECIDE + ROLLING_COUNT + ROLLING_REPLY
export const ROLLING_PEEK_SCRIPT: string = SERVER_TIME + ROLLING_DECIDE + ROLLING_REPLY

/** @internal The scripts with the time given by the caller instead of read from the server. */
export const GIVEN_TIME_SCRIPTS: {
  readonly consume: string
  readonly peek: string
  readonly rollingConsume: string
  readonly rollingPeek: string
} = {
  consume: GIVEN_TIME + DECIDE + COUNT + REPLY,
  peek: GIVEN_TIME + DECIDE + REPLY,
  rollingConsume: GIVEN_TIME + ROLLING_DECIDE + ROLLING_COUNT + ROLLING_REPLY,
  rollingPeek: GIVEN_TIME + ROLLING_DECIDE + ROLLING_REPLY,
}

type ConsumeReply = [
  admitted: number,
  minuteCount: number,
  minuteResetMs: number,
  hourCount: number,
  hourResetMs: number,
  minuteShort: number,
  hourShort: number,
]

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
  saikuRollingConsume(
    key: string,
    minuteLimit: number,
    hourLimit: number,
    minuteMs: number,
    hourMs: number,
    cost: number,
  ): Promise<ConsumeReply>
  saikuRollingPeek(
    key: string,
    minuteLimit: number,
    hourLimit: number,
    minuteMs: number,
    hourMs: number,
    cost: number,
  ): Promise<ConsumeReply>
  saikuConsume(
    key: string,
    minuteLimit: number,
    hourLimit: number,
    minuteMs: number,
    hourMs: number,
    cost: number,
  ): Promise<ConsumeReply>
  saikuPeek(
    key: string,
    minuteLimit: number,
    hourLimit: number,
    minuteMs: number,
    hourMs: number,
    cost: number,
  ): Promise<ConsumeReply>
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
   * affected. Then one call goes through to see whether the node is back. Limiters on
   * the same client (and the same `nodeDownPauseMs`) share what they learn. Default 500.
   */
  readonly nodeDownAfterMs?: number
  /** How long calls to a node known to be down fail at once before one tries again. Default 1000. */
  readonly nodeDownPauseMs?: number
  /**
   * `'fixed'` (default) or `'rolling'`: how the windows count, as the authenticator's
   * \`windows\` option (which must match). Rolling windows keep 24 numbers per tenant
   * in its hash; still one round trip per request.
   */
  readonly windows?: 'fixed' | 'rolling'
}

export interface RedisLimiterBackend extends LimiterBackend {
  /** The Redis key that holds a tenant's windows. */
  keyFor(tenantKey: string): string
  /** What a request would be told now, without counting it: one round trip that writes nothing. */
  peek(tenantKey: string, limits: WindowLimits): Promise<LimitDecision>
  readonly pendingCalls: number
}

function state(window: 'minute' | 'hour', limit: number, count: number, resetMs: number): WindowState {
  return { window, limit, remaining: Math.max(0, limit - count), used: count, resetMs: Math.max(1, resetMs) }
}

function toDecision(reply: ConsumeReply, limits: WindowLimits): LimitDecision {
  const [admitted, minuteCount, minuteResetMs, hourCount, hourResetMs, minuteShort, hourShort] = reply
  const minute = state('minute', limits.perMinute, minuteCount, minuteResetMs)
  const hour = state('hour', limits.perHour, hourCount, hourResetMs)
  if (admitted === 1) return { admitted: true, minute, hour, retryAfterMs: 0 }
  const retryAfterMs = Math.max(minuteShort === 1 ? minute.resetMs : 0, hourShort === 1 ? hour.resetMs : 0)
  return { admitted: false, minute, hour, retryAfterMs }
}

type Script = (
  client: RedisScriptClient & WithScripts,
  key: string,
  limits: WindowLimits,
  cost: number,
) => Promise<ConsumeReply>

function windowKind(options: RedisLimiterOptions): 'fixed' | 'rolling' {
  const windows = options.windows ?? 'fixed'
  if (windows !== 'fixed' && windows !== 'rolling')
    throw new SaikuConfigError('windows', 'one of "fixed", "rolling"', windows)
  return windows
}

function build(options: RedisLimiterOptions, consumeScript: Script, peekScript: Script): RedisLimiterBackend {
  const { client } = options
  const prefix = options.keyPrefix ?? 'saiku'
  const maxPendingCalls = options.maxPendingCalls ?? 1_000
  let pending = 0
  const nodeDownAfterMs = options.nodeDownAfterMs ?? 500
  const breaker = nodeBreakerFor(client, options.nodeDownPauseMs ?? 1_000)
  // The hash tag keeps every key of a tenant in one Cluster slot.
  const keyFor = (tenantKey: string): string => `${prefix}:{${tenantKey}}`

  async function run(script: Script, tenantKey: string, limits: WindowLimits, cost: number): Promise<LimitDecision> {
    if (client.status !== 'ready') throw new SaikuStoreError('limiter', `Redis is not connected (${client.status})`)
    if (pending >= maxPendingCalls) throw new SaikuStoreError('limiter', `${pending} Redis calls already pending`)
    const key = keyFor(tenantKey)
    const node = breaker.nodeOf(key)
    if (!breaker.allow(node, Date.now()))
      throw new SaikuStoreError('limiter', `Redis node ${node} is down; failing fast`)
    pending++
    let reply: ConsumeReply
    const startedOn = breaker.connection()
    // Slow enough to count as down: later calls for this node fail fast, this one still waits for its answer.
    const slow = setTimeout(() => breaker.failed(node, Date.now(), startedOn), nodeDownAfterMs)
    slow.unref?.()
    try {
      reply = await script(client as RedisScriptClient & WithScripts, key, limits, cost)
      breaker.succeeded(node)
    } catch (error) {
      breaker.failed(node, Date.now(), startedOn)
      throw new SaikuStoreError('limiter', 'Redis rate limit script failed', { cause: error })
    } finally {
      clearTimeout(slow)
      pending--
    }
    return toDecision(reply, limits)
  }

  return {
    windows: options.windows ?? 'fixed',
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
  if (windowKind(options) === 'rolling') {
    if (typeof (client as { saikuRollingConsume?: unknown }).saikuRollingConsume !== 'function') {
      client.defineCommand('saikuRollingConsume', { numberOfKeys: 1, lua: ROLLING_CONSUME_SCRIPT })
    }
    if (typeof (client as { saikuRollingPeek?: unknown }).saikuRollingPeek !== 'function') {
      client.defineCommand('saikuRollingPeek', { numberOfKeys: 1, lua: ROLLING_PEEK_SCRIPT })
    }
    return build(
      options,
      (redis, key, limits, cost) =>
        redis.saikuRollingConsume(key, limits.perMinute, limits.perHour, 60_000, 3_600_000, cost),
      (redis, key, limits, cost) =>
        redis.saikuRollingPeek(key, limits.perMinute, limits.perHour, 60_000, 3_600_000, cost),
    )
  }
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
  const rolling = windowKind(options) === 'rolling'
  const consumeName = rolling ? 'saikuRollingConsumeAt' : 'saikuConsumeAt'
  const peekName = rolling ? 'saikuRollingPeekAt' : 'saikuPeekAt'
  if (typeof given[consumeName] !== 'function')
    client.defineCommand(consumeName, {
      numberOfKeys: 1,
      lua: rolling ? GIVEN_TIME_SCRIPTS.rollingConsume : GIVEN_TIME_SCRIPTS.consume,
    })
  if (typeof given[peekName] !== 'function')
    client.defineCommand(peekName, {
      numberOfKeys: 1,
      lua: rolling ? GIVEN_TIME_SCRIPTS.rollingPeek : GIVEN_TIME_SCRIPTS.peek,
    })
  return build(
    options,
    (_redis, key, limits, cost) =>
      given[consumeName]!(key, limits.perMinute, limits.perHour, minuteMs, hourMs, cost, now()),
    (_redis, key, limits, cost) =>
      given[peekName]!(key, limits.perMinute, limits.perHour, minuteMs, hourMs, cost, now()),
  )
}
