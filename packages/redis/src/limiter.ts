import { nodeBreakerFor } from './breaker.js'
import {
  SaikuConfigError,
  SaikuStoreError,
  type LimitDecision,
  type LimiterBackend,
  type WindowLimits,
  type WindowName,
  type WindowState,
} from '@saiku/core'

/**
 * The quotas (`perDay`, `perMonth`), shared by the fixed and rolling scripts. They count in
 * calendar windows whose edges the script derives from `now` (the server's `TIME`, the one clock
 * of every window): the UTC day, and the month that starts at 00:00 UTC on day `monthStartDay`
 * (1–31; the month's last day when it is shorter). Dates are days-from-civil / civil-from-days
 * arithmetic on the proleptic Gregorian calendar; ms since the epoch are exact in Lua's doubles.
 *
 * A quota the limits do not set is neither read nor written (ARGV 0). One that is set reads its
 * window's end and count (fields de/dc for the day, Me/Mc for the month; ds/Ms hold the start).
 * A window counted in lives until its end, even when the clock steps back before its start;
 * after its end, the window that holds the clock counts from 0. Each quota adds two numbers to
 * the reply: its count and the time to its end (whether it has room for the cost, the caller knows).
 *
 * ARGV 6–8: perDay, perMonth (0 = not set), monthStartDay.
 */
const QUOTA_ARGS = `
local perDay, perMonth = tonumber(ARGV[6]) or 0, tonumber(ARGV[7]) or 0
`

// Adds the quotas' fields to `names`, the fields the script reads, after those of the minute and hour.
const QUOTA_FIELDS = `
if perDay > 0 then names[#names + 1] = 'de'; names[#names + 1] = 'dc' end
if perMonth > 0 then names[#names + 1] = 'Me'; names[#names + 1] = 'Mc' end
`

const QUOTA_DECIDE = `
local quotaRoom = true
local dayStart, dayEnd, dayCount, monthStart, monthEnd, monthCount
local at = quotaBase + 1
if perDay > 0 then
  dayEnd = tonumber(v[at])
  if dayEnd ~= nil and now < dayEnd then
    dayCount = tonumber(v[at + 1]) or 0
  else
    dayStart = math.floor(now / 86400000) * 86400000; dayEnd = dayStart + 86400000; dayCount = 0
  end
  if dayCount + cost > perDay then quotaRoom = false end
  at = at + 2
end
if perMonth > 0 then
  monthEnd = tonumber(v[at])
  if monthEnd ~= nil and now < monthEnd then
    monthCount = tonumber(v[at + 1]) or 0
  else
    -- Only a month window that starts pays for the calendar.
    local startDay = tonumber(ARGV[8]) or 1
    local function daysFromCivil(y, m, d)
      if m <= 2 then y = y - 1 end
      local era = math.floor(y / 400)
      local yoe = y - era * 400
      local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
      return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
    end
    local function anchored(y, m)
      if m < 1 then y = y - 1; m = m + 12 elseif m > 12 then y = y + 1; m = m - 12 end
      local length = 31
      if m == 2 then
        length = 28
        if (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0 then length = 29 end
      elseif m == 4 or m == 6 or m == 9 or m == 11 then
        length = 30
      end
      return daysFromCivil(y, m, math.min(startDay, length)) * 86400000
    end
    -- civil-from-days: the UTC year and month of today.
    local z = math.floor(now / 86400000) + 719468
    local era = math.floor(z / 146097)
    local doe = z - era * 146097
    local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
    local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
    local m = (math.floor((5 * doy + 2) / 153) + 2) % 12 + 1
    local y = yoe + era * 400
    if m <= 2 then y = y + 1 end
    local this = anchored(y, m)
    if now >= this then monthStart, monthEnd = this, anchored(y, m + 1) else monthStart, monthEnd = anchored(y, m - 1), this end
    monthCount = 0
  end
  if monthCount + cost > perMonth then quotaRoom = false end
end
`

// After an admission: counts the cost in each quota (into `fields`), and says how far the hash's TTL must reach.
const QUOTA_COUNT = `
if perDay > 0 then
  dayCount = dayCount + cost
  fields[#fields + 1] = 'dc'; fields[#fields + 1] = dayCount
  if dayStart ~= nil then
    anyFresh = true
    fields[#fields + 1] = 'ds'; fields[#fields + 1] = dayStart; fields[#fields + 1] = 'de'; fields[#fields + 1] = dayEnd
  end
  latestEnd = dayEnd
end
if perMonth > 0 then
  monthCount = monthCount + cost
  fields[#fields + 1] = 'Mc'; fields[#fields + 1] = monthCount
  if monthStart ~= nil then
    anyFresh = true
    fields[#fields + 1] = 'Ms'; fields[#fields + 1] = monthStart; fields[#fields + 1] = 'Me'; fields[#fields + 1] = monthEnd
  end
  latestEnd = math.max(latestEnd, monthEnd)
end
`

/*
 * The hash lives until the latest end of every window it counts. A window that starts moves that
 * end; a key that existed may hold a quota these limits do not set (a plan changed back and forth),
 * so its TTL is only ever lengthened.
 */
const EXPIRE = `
local function expire(existed, ttl)
  if not existed then redis.call('PEXPIRE', KEYS[1], ttl); return end
  local left = redis.call('PTTL', KEYS[1])
  if left < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
end
`

const QUOTA_REPLY = `
if perDay > 0 then reply[#reply + 1] = dayCount; reply[#reply + 1] = dayEnd - now end
if perMonth > 0 then reply[#reply + 1] = monthCount; reply[#reply + 1] = monthEnd - now end
return reply
`

/**
 * Both windows of one tenant live in one hash, `<prefix>:{<tenantKey>}`, and one
 * script decides them with the quotas: read them, admit only if every window has room,
 * then count in all. A refused request writes nothing. Each window starts at the first request
 * admitted after the previous one ended and lasts its length, whatever
 * the other does; a clock that steps back keeps the counts. Time comes from the
 * Redis server, so every process shares one clock. The hash's TTL is set whenever
 * a window starts and covers whichever window ends latest.
 *
 * Fields: ms/mc = minute window start (ms) and count, hs/hc = the same for the hour.
 * ARGV: minute limit, hour limit, minute length, hour length, cost (units taken from
 * every window, or none), the quotas (see QUOTA_ARGS), and in tests the time. The reply says
 * which windows lack room for the cost, so Retry-After waits for exactly those.
 */
const DECIDE =
  `
local minuteLimit, hourLimit = tonumber(ARGV[1]), tonumber(ARGV[2])
local minuteMs, hourMs = tonumber(ARGV[3]), tonumber(ARGV[4])
local cost = tonumber(ARGV[5]) or 1
` +
  QUOTA_ARGS +
  `
local v, quotaBase = nil, 4
if perDay == 0 and perMonth == 0 then
  v = redis.call('HMGET', KEYS[1], 'ms', 'mc', 'hs', 'hc')
else
  local names = {'ms', 'mc', 'hs', 'hc'}
` +
  QUOTA_FIELDS +
  `
  v = redis.call('HMGET', KEYS[1], unpack(names))
end
local ms, mc, hs, hc = tonumber(v[1]), tonumber(v[2]) or 0, tonumber(v[3]), tonumber(v[4]) or 0
local existed = ms ~= nil
local newMinute, newHour = false, false
if ms == nil or now >= ms + minuteMs then ms = now; mc = 0; newMinute = true end
if hs == nil or now >= hs + hourMs then hs = now; hc = 0; newHour = true end
` +
  QUOTA_DECIDE +
  `
local admitted = 0
if mc + cost <= minuteLimit and hc + cost <= hourLimit and quotaRoom then admitted = 1 end
`

const COUNT =
  EXPIRE +
  `
if admitted == 1 then
  mc = mc + cost
  hc = hc + cost
  local latestEnd, anyFresh = 0, false
  if perDay == 0 and perMonth == 0 then
    redis.call('HSET', KEYS[1], 'ms', ms, 'mc', mc, 'hs', hs, 'hc', hc)
  else
    local fields = {'ms', ms, 'mc', mc, 'hs', hs, 'hc', hc}
` +
  QUOTA_COUNT +
  `
    redis.call('HSET', KEYS[1], unpack(fields))
  end
  if newMinute or newHour or anyFresh then expire(existed, math.max(ms + minuteMs, hs + hourMs, latestEnd) - now) end
end
`

const REPLY =
  `
local minuteShort, hourShort = 0, 0
if mc + cost > minuteLimit then minuteShort = 1 end
if hc + cost > hourLimit then hourShort = 1 end
if admitted == 1 then minuteShort = 0; hourShort = 0 end
local reply = {admitted, mc, ms + minuteMs - now, hc, hs + hourMs - now, minuteShort, hourShort}
` + QUOTA_REPLY

/**
 * Rolling windows (see the core's \`rolling.ts\`): each window is cut into 10
 * sub-windows aligned on the epoch, and a request counts against its sub-window
 * and the 10 before it. Fields: mi/hi = the newest sub-window counted of each
 * window, m0..m10 / h0..h10 = the counts of the 11 sub-windows (index mod 11).
 * A request is admitted only if every window (and quota) has room for its cost, then counted in
 * all; a refused request writes nothing. The reply has the fixed windows' shape:
 * what each window counts, and until when — for a window short of room the wait
 * until it has room, else until everything it counts has dropped out. The quotas are
 * calendar windows, as with fixed windows.
 */
const ROLLING_DECIDE =
  `
local K = 10
local minuteLimit, hourLimit = tonumber(ARGV[1]), tonumber(ARGV[2])
local minuteMs, hourMs = tonumber(ARGV[3]), tonumber(ARGV[4])
local cost = tonumber(ARGV[5]) or 1
local names = {'mi', 'hi'}
for s = 0, K do names[#names + 1] = 'm' .. s; names[#names + 1] = 'h' .. s end
local quotaBase = #names
` +
  QUOTA_ARGS +
  QUOTA_FIELDS +
  `
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
local existed = minute.last ~= nil
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
` +
  QUOTA_DECIDE +
  `
local admitted = 0
if minuteWait == 0 and hourWait == 0 and quotaRoom then admitted = 1 end
`

const ROLLING_COUNT =
  EXPIRE +
  `
if admitted == 1 then
  local fields = {}
  -- The time until everything counted has dropped out moves only when a sub-window starts.
  local moved = minute.last ~= minute.index or hour.last ~= hour.index
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
  local latestEnd, anyFresh = 0, false
` +
  QUOTA_COUNT +
  `
  redis.call('HSET', KEYS[1], unpack(fields))
  if moved or anyFresh then
    expire(existed, math.max(fullReset(minute, minuteMs), fullReset(hour, hourMs), latestEnd - now))
  end
end
`

const ROLLING_REPLY =
  `
local minuteShort, hourShort = 0, 0
local minuteReset, hourReset = minuteWait, hourWait
if minuteWait > 0 then minuteShort = 1 else minuteReset = fullReset(minute, minuteMs) end
if hourWait > 0 then hourShort = 1 else hourReset = fullReset(hour, hourMs) end
local reply = {admitted, sumFrom(minute, minute.index - K), minuteReset, sumFrom(hour, hour.index - K), hourReset, minuteShort, hourShort}
` + QUOTA_REPLY

const SERVER_TIME = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// Tests only: the time is the last argument, so windows can be driven across their edges.
const GIVEN_TIME = `
local now = tonumber(ARGV[9])
`

/** Counts a request's cost if every window has room for it; replies with the decision and every window. */
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

/** The minute and hour, then for each quota the limits set (day, then month): its count and the time to its end. */
type ConsumeReply = [
  admitted: number,
  minuteCount: number,
  minuteResetMs: number,
  hourCount: number,
  hourResetMs: number,
  minuteShort: number,
  hourShort: number,
  ...quotas: number[],
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

/** A script defined on the client: the key, then ARGV (see the scripts). */
type ScriptCommand = (key: string, ...args: number[]) => Promise<ConsumeReply>

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

function state(window: WindowName, limit: number, count: number, resetMs: number): WindowState {
  return { window, limit, remaining: Math.max(0, limit - count), used: count, resetMs: Math.max(1, resetMs) }
}

/**
 * ARGV 6–8 of the scripts: perDay, perMonth (0 when not set) and monthStartDay. Limits come
 * validated from the authenticator; a backend called directly with a bad quota throws rather
 * than count something else.
 */
type QuotaArgs = readonly [perDay: number, perMonth: number, monthStartDay: number]
const NO_QUOTAS: QuotaArgs = [0, 0, 1]

function quotaArgs(limits: WindowLimits): QuotaArgs {
  const { perDay, perMonth, monthStartDay } = limits
  if (perDay === undefined && perMonth === undefined) return NO_QUOTAS
  if (perDay !== undefined && !(Number.isSafeInteger(perDay) && perDay > 0))
    throw new SaikuConfigError('limits.perDay', 'a positive integer or absent', perDay)
  if (perMonth !== undefined && !(Number.isSafeInteger(perMonth) && perMonth > 0))
    throw new SaikuConfigError('limits.perMonth', 'a positive integer or absent', perMonth)
  const startDay = monthStartDay ?? 1
  if (!Number.isInteger(startDay) || startDay < 1 || startDay > 31)
    throw new SaikuConfigError('limits.monthStartDay', 'a whole number from 1 to 31', monthStartDay)
  return [perDay ?? 0, perMonth ?? 0, startDay]
}

function toDecision(reply: ConsumeReply, limits: WindowLimits, cost: number): LimitDecision {
  const [admitted, minuteCount, minuteResetMs, hourCount, hourResetMs, minuteShort, hourShort] = reply
  const minute = state('minute', limits.perMinute, minuteCount, minuteResetMs)
  const hour = state('hour', limits.perHour, hourCount, hourResetMs)
  const { perDay, perMonth } = limits
  const noQuotas = perDay === undefined && perMonth === undefined
  if (noQuotas && admitted === 1) return { admitted: true, minute, hour, retryAfterMs: 0 }
  let retryAfterMs = Math.max(minuteShort === 1 ? minute.resetMs : 0, hourShort === 1 ? hour.resetMs : 0)
  if (noQuotas) return { admitted: false, minute, hour, retryAfterMs }
  // The quotas follow in the reply, day then month, each only when set. One short of room for the
  // cost is waited for until its end (a refused request counted nothing, so the reply's count is before it).
  const ok = admitted === 1
  let at = 7
  let day: WindowState | undefined
  let month: WindowState | undefined
  if (perDay !== undefined) {
    day = state('day', perDay, reply[at]!, reply[at + 1]!)
    if (!ok && reply[at]! + cost > perDay) retryAfterMs = Math.max(retryAfterMs, day.resetMs)
    at += 2
  }
  if (perMonth !== undefined) {
    month = state('month', perMonth, reply[at]!, reply[at + 1]!)
    if (!ok && reply[at]! + cost > perMonth) retryAfterMs = Math.max(retryAfterMs, month.resetMs)
  }
  if (ok) retryAfterMs = 0
  if (day === undefined) return { admitted: ok, minute, hour, month, retryAfterMs }
  if (month === undefined) return { admitted: ok, minute, hour, day, retryAfterMs }
  return { admitted: ok, minute, hour, day, month, retryAfterMs }
}

type Script = (
  client: Record<string, ScriptCommand>,
  key: string,
  limits: WindowLimits,
  cost: number,
  quotas: QuotaArgs,
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
    // A bad quota is the caller's error, thrown before Redis is asked (and never marks the node down).
    const quotas = quotaArgs(limits)
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
      reply = await script(client as unknown as Record<string, ScriptCommand>, key, limits, cost, quotas)
      breaker.succeeded(node)
    } catch (error) {
      breaker.failed(node, Date.now(), startedOn)
      throw new SaikuStoreError('limiter', 'Redis rate limit script failed', { cause: error })
    } finally {
      clearTimeout(slow)
      pending--
    }
    return toDecision(reply, limits, cost)
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

/** The scripts' calls: ARGV as the scripts read them, and the time last in tests. */
function scripts(
  consumeName: string,
  peekName: string,
  minuteMs: number,
  hourMs: number,
  now?: () => number,
): [consume: Script, peek: Script] {
  const call =
    (name: string): Script =>
    (redis, key, limits, cost, quotas) => {
      const command = redis[name]!
      const { perMinute, perHour } = limits
      // Without quotas the script reads ARGV 6–8 as 0: limits without them send what they always did.
      if (now === undefined && quotas === NO_QUOTAS)
        return command.call(redis, key, perMinute, perHour, minuteMs, hourMs, cost)
      const [perDay, perMonth, monthStartDay] = quotas
      if (now === undefined && perMonth === 0)
        return command.call(redis, key, perMinute, perHour, minuteMs, hourMs, cost, perDay)
      if (now === undefined)
        return command.call(redis, key, perMinute, perHour, minuteMs, hourMs, cost, perDay, perMonth, monthStartDay)
      return command.call(
        redis,
        key,
        perMinute,
        perHour,
        minuteMs,
        hourMs,
        cost,
        perDay,
        perMonth,
        monthStartDay,
        now(),
      )
    }
  return [call(consumeName), call(peekName)]
}

function define(client: RedisScriptClient, name: string, lua: string): void {
  // defineCommand sends EVALSHA and falls back to EVAL once when the script cache was flushed.
  if (typeof (client as unknown as Record<string, unknown>)[name] !== 'function')
    client.defineCommand(name, { numberOfKeys: 1, lua })
}

/**
 * The Redis backend: one round trip (EVALSHA) per request decides every window (minute, hour,
 * and the day and month quotas when the limits set them), all or nothing.
 */
export function createRedisLimiter(options: RedisLimiterOptions): RedisLimiterBackend {
  const { client } = options
  if (windowKind(options) === 'rolling') {
    define(client, 'saikuRollingConsume', ROLLING_CONSUME_SCRIPT)
    define(client, 'saikuRollingPeek', ROLLING_PEEK_SCRIPT)
    return build(options, ...scripts('saikuRollingConsume', 'saikuRollingPeek', 60_000, 3_600_000))
  }
  define(client, 'saikuConsume', CONSUME_SCRIPT)
  define(client, 'saikuPeek', PEEK_SCRIPT)
  return build(options, ...scripts('saikuConsume', 'saikuPeek', 60_000, 3_600_000))
}

/**
 * @internal For tests: the same backend, with the time passed to the scripts by
 * `now()` instead of read with `TIME`, and optionally shorter windows.
 */
export function createRedisLimiterAt(
  options: RedisLimiterOptions & { readonly now: () => number; readonly minuteMs?: number; readonly hourMs?: number },
): RedisLimiterBackend {
  const { client, now } = options
  const rolling = windowKind(options) === 'rolling'
  const consumeName = rolling ? 'saikuRollingConsumeAt' : 'saikuConsumeAt'
  const peekName = rolling ? 'saikuRollingPeekAt' : 'saikuPeekAt'
  define(client, consumeName, rolling ? GIVEN_TIME_SCRIPTS.rollingConsume : GIVEN_TIME_SCRIPTS.consume)
  define(client, peekName, rolling ? GIVEN_TIME_SCRIPTS.rollingPeek : GIVEN_TIME_SCRIPTS.peek)
  return build(options, ...scripts(consumeName, peekName, options.minuteMs ?? 60_000, options.hourMs ?? 3_600_000, now))
}
