import { keySlot, nodeBreakerFor } from './breaker.js'
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
local startDay = tonumber(ARGV[8]) or 1
`

// Adds the quotas' fields to `names`, the fields the script reads, after those of the minute and hour.
const QUOTA_FIELDS = `
if perDay > 0 then names[#names + 1] = 'de'; names[#names + 1] = 'dc' end
if perMonth > 0 then names[#names + 1] = 'Me'; names[#names + 1] = 'Mc' end
`

// The month that holds `now` for an anchor day (1–31; the month's last day when it is shorter): its start and end.
const MONTH_WINDOW = `
local function monthWindow(startDay)
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
  if now >= this then return this, anchored(y, m + 1) end
  return anchored(y, m - 1), this
end
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
    monthStart, monthEnd = monthWindow(startDay)
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
local function expire(key, existed, ttl)
  if not existed then redis.call('PEXPIRE', key, ttl); return end
  local left = redis.call('PTTL', key)
  if left < ttl then redis.call('PEXPIRE', key, ttl) end
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
const ARGS =
  `
local key = KEYS[1]
local minuteLimit, hourLimit = tonumber(ARGV[1]), tonumber(ARGV[2])
local minuteMs, hourMs = tonumber(ARGV[3]), tonumber(ARGV[4])
local cost = tonumber(ARGV[5]) or 1
` + QUOTA_ARGS

const DECIDE =
  ARGS +
  `
local v, quotaBase = nil, 4
if perDay == 0 and perMonth == 0 then
  v = redis.call('HMGET', key, 'ms', 'mc', 'hs', 'hc')
else
  local names = {'ms', 'mc', 'hs', 'hc'}
` +
  QUOTA_FIELDS +
  `
  v = redis.call('HMGET', key, unpack(names))
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
    redis.call('HSET', key, 'ms', ms, 'mc', mc, 'hs', hs, 'hc', hc)
  else
    local fields = {'ms', ms, 'mc', mc, 'hs', hs, 'hc', hc}
` +
  QUOTA_COUNT +
  `
    redis.call('HSET', key, unpack(fields))
  end
  if newMinute or newHour or anyFresh then expire(key, existed, math.max(ms + minuteMs, hs + hourMs, latestEnd) - now) end
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

const ROLLING_WINDOWS =
  `
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

const ROLLING_NAMES = `
local K = 10
local function rollingNames()
  local names = {'mi', 'hi'}
  for s = 0, K do names[#names + 1] = 'm' .. s; names[#names + 1] = 'h' .. s end
  return names
end
`

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
  ARGS +
  ROLLING_NAMES +
  `
local names = rollingNames()
local quotaBase = #names
` +
  QUOTA_FIELDS +
  `
local v = redis.call('HMGET', key, unpack(names))
` +
  ROLLING_WINDOWS

const ROLLING_COUNT_BODY =
  `
if admitted == 1 and write then
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
  redis.call('HSET', key, unpack(fields))
  if moved or anyFresh then
    expire(key, existed, math.max(fullReset(minute, minuteMs), fullReset(hour, hourMs), latestEnd - now))
  end
end
`

const ROLLING_COUNT = EXPIRE + 'local write = true' + ROLLING_COUNT_BODY

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

/*
 * The coalesced scripts: every decision that reached the backend in one event-loop turn (for one
 * Cluster slot), decided one after the other in arrival order, each exactly as the scripts above
 * decide one call: all or nothing across its windows, with its own cost and limits. A decision
 * reads what the ones before it wrote. One `TIME` per batch: the decisions of a batch share a clock.
 *
 * KEYS: the batch's tenants' hashes, each once. ARGV: minute length, hour length, then one string of
 * the batch's distinct limits, 5 numbers each ("m h d M s "): perMinute, perHour, perDay, perMonth
 * (0 = not set), monthStartDay; then one string of 4 numbers per decision ("k c l w "): the index of
 * its key in KEYS, its cost, the index of its limits, and 1 to count or 0 to peek; in tests the time
 * last. Two strings instead of 8 arguments per decision, and each tier's limits sent once, keep the
 * call short and cheap to encode, quotas or not.
 *
 * The reply is flat: per decision its flags (1 admitted, 2 the minute short of room, 4 the hour),
 * the minute's count and time to its end, the same for the hour, then for each quota its limits
 * set (day, then month) its count and time to its end.
 */
const BATCH_HEAD = `
local minuteMs, hourMs = tonumber(ARGV[1]), tonumber(ARGV[2])
local out, n = {}, 0
local function expire(key, existed, ttl)
  if not existed then redis.call('PEXPIRE', key, ttl); return end
  local left = redis.call('PTTL', key)
  if left < ttl then redis.call('PEXPIRE', key, ttl) end
end
local limits = {}
for m, h, d, M, s in string.gmatch(ARGV[3], '(%d+) (%d+) (%d+) (%d+) (%d+) ') do
  limits[#limits + 1] = {tonumber(m), tonumber(h), tonumber(d), tonumber(M), tonumber(s)}
end
for k, cost, l, write in string.gmatch(ARGV[4], '(%d+) (%d+) (%d+) (%d) ') do
local key = KEYS[tonumber(k)]
local set = limits[tonumber(l)]
local minuteLimit, hourLimit, perDay, perMonth, startDay = set[1], set[2], set[3], set[4], set[5]
cost, write = tonumber(cost), write == '1'
`

const BATCH_TAIL = `
end
return out
`

/*
 * Fixed windows: each tenant's hash is read once per batch (all eight fields, in one literal HMGET) into a table that
 * every decision of the batch for that tenant reads and updates in turn, and written once at the end: the fields some
 * decision counted in, with their last values, and the TTL that the latest window needs (what one call per decision
 * would leave). A tenant with many requests in a turn costs one HMGET and one HSET, not one of each per request.
 */
const FIXED_BATCH_HEAD = `
local cache, touched = {}, {}
`

const BATCH_DECIDE = `
local c = cache[key]
if c == nil then
  local v = redis.call('HMGET', key, 'ms', 'mc', 'hs', 'hc', 'de', 'dc', 'Me', 'Mc')
  c = {
    ms = tonumber(v[1]), mc = tonumber(v[2]) or 0, hs = tonumber(v[3]), hc = tonumber(v[4]) or 0,
    de = tonumber(v[5]), dc = tonumber(v[6]) or 0, Me = tonumber(v[7]), Mc = tonumber(v[8]) or 0,
    ttl = 0, written = false, dayCounted = false, monthCounted = false
  }
  c.existed = c.ms ~= nil
  cache[key] = c
  touched[#touched + 1] = key
end
local ms, mc, hs, hc = c.ms, c.mc, c.hs, c.hc
local newMinute, newHour = false, false
if ms == nil or now >= ms + minuteMs then ms = now; mc = 0; newMinute = true end
if hs == nil or now >= hs + hourMs then hs = now; hc = 0; newHour = true end
local quotaRoom = true
local dayStart, dayEnd, dayCount, monthStart, monthEnd, monthCount
if perDay > 0 then
  dayEnd = c.de
  if dayEnd ~= nil and now < dayEnd then
    dayCount = c.dc
  else
    dayStart = math.floor(now / 86400000) * 86400000; dayEnd = dayStart + 86400000; dayCount = 0
  end
  if dayCount + cost > perDay then quotaRoom = false end
end
if perMonth > 0 then
  monthEnd = c.Me
  if monthEnd ~= nil and now < monthEnd then
    monthCount = c.Mc
  else
    monthStart, monthEnd = monthWindow(startDay)
    monthCount = 0
  end
  if monthCount + cost > perMonth then quotaRoom = false end
end
local admitted = 0
if mc + cost <= minuteLimit and hc + cost <= hourLimit and quotaRoom then admitted = 1 end
if admitted == 1 and write then
  mc = mc + cost
  hc = hc + cost
  c.ms, c.mc, c.hs, c.hc, c.written = ms, mc, hs, hc, true
  local latestEnd, fresh = 0, newMinute or newHour
  if perDay > 0 then
    dayCount = dayCount + cost
    c.dc, c.de, c.dayCounted = dayCount, dayEnd, true
    if dayStart ~= nil then c.ds = dayStart; fresh = true end
    latestEnd = dayEnd
  end
  if perMonth > 0 then
    monthCount = monthCount + cost
    c.Mc, c.Me, c.monthCounted = monthCount, monthEnd, true
    if monthStart ~= nil then c.Ms = monthStart; fresh = true end
    latestEnd = math.max(latestEnd, monthEnd)
  end
  if fresh then c.ttl = math.max(c.ttl, math.max(ms + minuteMs, hs + hourMs, latestEnd) - now) end
end
local flags = admitted
if admitted == 0 then
  if mc + cost > minuteLimit then flags = flags + 2 end
  if hc + cost > hourLimit then flags = flags + 4 end
end
out[n + 1] = flags; out[n + 2] = mc; out[n + 3] = ms + minuteMs - now; out[n + 4] = hc; out[n + 5] = hs + hourMs - now
n = n + 5
`

// After the last decision: each hash that a decision counted in, written once (a window that started writes its edges).
const FIXED_BATCH_TAIL = `
end
for _, key in ipairs(touched) do
  local c = cache[key]
  if c.written then
    if not c.dayCounted and not c.monthCounted then
      redis.call('HSET', key, 'ms', c.ms, 'mc', c.mc, 'hs', c.hs, 'hc', c.hc)
    else
      local fields = {'ms', c.ms, 'mc', c.mc, 'hs', c.hs, 'hc', c.hc}
      if c.dayCounted then fields[#fields + 1] = 'dc'; fields[#fields + 1] = c.dc end
      if c.ds ~= nil then fields[#fields + 1] = 'ds'; fields[#fields + 1] = c.ds; fields[#fields + 1] = 'de'; fields[#fields + 1] = c.de end
      if c.monthCounted then fields[#fields + 1] = 'Mc'; fields[#fields + 1] = c.Mc end
      if c.Ms ~= nil then fields[#fields + 1] = 'Ms'; fields[#fields + 1] = c.Ms; fields[#fields + 1] = 'Me'; fields[#fields + 1] = c.Me end
      redis.call('HSET', key, unpack(fields))
    end
    if c.ttl > 0 then expire(key, c.existed, c.ttl) end
  end
end
return out
`

const BATCH_QUOTA_REPLY = `
if perDay > 0 then out[n + 1] = dayCount; out[n + 2] = dayEnd - now; n = n + 2 end
if perMonth > 0 then out[n + 1] = monthCount; out[n + 2] = monthEnd - now; n = n + 2 end
`

// Rolling windows: the field names are built once per batch, for each set of quotas met.
const ROLLING_BATCH_HEAD =
  ROLLING_NAMES +
  `
local namesFor = {}
` +
  BATCH_HEAD +
  `
local which = (perDay > 0 and 1 or 0) + (perMonth > 0 and 2 or 0)
local names = namesFor[which]
local quotaBase = 24
if names == nil then
  names = rollingNames()
` +
  QUOTA_FIELDS +
  `
  namesFor[which] = names
end
local v = redis.call('HMGET', key, unpack(names))
`

const ROLLING_BATCH_REPLY = `
local flags = admitted
local minuteReset, hourReset = minuteWait, hourWait
if minuteWait > 0 then flags = flags + 2 else minuteReset = fullReset(minute, minuteMs) end
if hourWait > 0 then flags = flags + 4 else hourReset = fullReset(hour, hourMs) end
out[n + 1] = flags; out[n + 2] = sumFrom(minute, minute.index - K); out[n + 3] = minuteReset
out[n + 4] = sumFrom(hour, hour.index - K); out[n + 5] = hourReset
n = n + 5
`

// Tests only: the time is the batch's last argument.
const BATCH_GIVEN_TIME = `
local now = tonumber(ARGV[5])
`

/** Decides a batch of decisions (counts and peeks) in arrival order, in one call: see the limiter. */
export const BATCH_SCRIPT: string =
  SERVER_TIME + MONTH_WINDOW + FIXED_BATCH_HEAD + BATCH_HEAD + BATCH_DECIDE + BATCH_QUOTA_REPLY + FIXED_BATCH_TAIL
/** The same for rolling windows. */
export const ROLLING_BATCH_SCRIPT: string =
  SERVER_TIME +
  MONTH_WINDOW +
  ROLLING_BATCH_HEAD +
  ROLLING_WINDOWS +
  ROLLING_COUNT_BODY +
  ROLLING_BATCH_REPLY +
  BATCH_QUOTA_REPLY +
  BATCH_TAIL

/** Counts a request's cost if every window has room for it; replies with the decision and every window. */
export const CONSUME_SCRIPT: string = SERVER_TIME + MONTH_WINDOW + DECIDE + COUNT + REPLY
/** The same reply, writing nothing: what a request would be told now. */
export const PEEK_SCRIPT: string = SERVER_TIME + MONTH_WINDOW + DECIDE + REPLY

/** The same two, for rolling windows. */
export const ROLLING_CONSUME_SCRIPT: string =
  SERVER_TIME + MONTH_WINDOW + ROLLING_DECIDE + ROLLING_COUNT + ROLLING_REPLY
export const ROLLING_PEEK_SCRIPT: string = SERVER_TIME + MONTH_WINDOW + ROLLING_DECIDE + ROLLING_REPLY

/** @internal The scripts with the time given by the caller instead of read from the server. */
export const GIVEN_TIME_SCRIPTS: {
  readonly consume: string
  readonly peek: string
  readonly rollingConsume: string
  readonly rollingPeek: string
  readonly batch: string
  readonly rollingBatch: string
} = {
  consume: GIVEN_TIME + MONTH_WINDOW + DECIDE + COUNT + REPLY,
  peek: GIVEN_TIME + MONTH_WINDOW + DECIDE + REPLY,
  rollingConsume: GIVEN_TIME + MONTH_WINDOW + ROLLING_DECIDE + ROLLING_COUNT + ROLLING_REPLY,
  rollingPeek: GIVEN_TIME + MONTH_WINDOW + ROLLING_DECIDE + ROLLING_REPLY,
  batch:
    BATCH_GIVEN_TIME +
    MONTH_WINDOW +
    FIXED_BATCH_HEAD +
    BATCH_HEAD +
    BATCH_DECIDE +
    BATCH_QUOTA_REPLY +
    FIXED_BATCH_TAIL,
  rollingBatch:
    BATCH_GIVEN_TIME +
    MONTH_WINDOW +
    ROLLING_BATCH_HEAD +
    ROLLING_WINDOWS +
    ROLLING_COUNT_BODY +
    ROLLING_BATCH_REPLY +
    BATCH_QUOTA_REPLY +
    BATCH_TAIL,
}

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

/** A per-call script defined on the client: the key, then ARGV (see the scripts). */
type ScriptCommand = (key: string, ...args: number[]) => Promise<number[]>
/** A batch script: the number of keys, the keys, then ARGV (see BATCH_SCRIPT). */
type BatchCommand = (...args: (string | number)[]) => Promise<number[]>

export interface RedisLimiterOptions {
  /**
   * An ioredis client or cluster. Give it `enableOfflineQueue: false` so calls fail at once while it is
   * disconnected; `enableAutoPipelining: true` sends what other code asks of the same client in the
   * same turn in one write with the limiter's batches (see the scaling guide).
   */
  readonly client: RedisScriptClient
  /** Default `"saiku"`. */
  readonly keyPrefix?: string
  /**
   * Decisions this process may have waiting on Redis at once, in batches or alone; beyond it a
   * decision fails at once instead of queueing (a paused Redis must not pile up work). Default 1000.
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
  /**
   * Default true: the decisions (counts and peeks) that reach the backend in one event-loop turn
   * go to Redis as one script call per Cluster slot, decided in arrival order, each exactly as it
   * would be alone. False sends one script call per decision.
   */
  readonly coalesce?: boolean
  /** The most decisions in one script call; a turn with more sends several. Default 128. */
  readonly maxBatchSize?: number
  /** The most bytes of keys and arguments in one script call; a turn with more sends several. Default 65536. */
  readonly maxBatchBytes?: number
  /**
   * Told the number of decisions in each script call as it is sent (1 for each call without
   * coalescing): a histogram of it shows how much coalescing saves. A hook that throws or rejects
   * is ignored: a metric never fails a decision.
   */
  readonly onBatch?: (decisions: number) => unknown
}

export interface RedisLimiterBackend extends LimiterBackend {
  /** The Redis key that holds a tenant's windows. */
  keyFor(tenantKey: string): string
  /** What a request would be told now, without counting it: a decision that writes nothing, coalesced as counts are. */
  peek(tenantKey: string, limits: WindowLimits): Promise<LimitDecision>
  /** Decisions waiting on Redis: gathered for this turn's batches or in flight. */
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

const positive = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) > 0

/** Throws for limits or a cost the scripts cannot count: they travel as whole numbers in text. */
function checkLimits(limits: WindowLimits, cost: number): void {
  if (!positive(limits.perMinute))
    throw new SaikuConfigError('limits.perMinute', 'a positive integer', limits.perMinute)
  if (!positive(limits.perHour)) throw new SaikuConfigError('limits.perHour', 'a positive integer', limits.perHour)
  if (!positive(cost)) throw new SaikuConfigError('cost', 'a positive integer', cost)
  const { perDay, perMonth, monthStartDay } = limits
  if (perDay === undefined && perMonth === undefined) return
  if (perDay !== undefined && !positive(perDay))
    throw new SaikuConfigError('limits.perDay', 'a positive integer or absent', perDay)
  if (perMonth !== undefined && !positive(perMonth))
    throw new SaikuConfigError('limits.perMonth', 'a positive integer or absent', perMonth)
  const startDay = monthStartDay ?? 1
  if (!Number.isInteger(startDay) || startDay < 1 || startDay > 31)
    throw new SaikuConfigError('limits.monthStartDay', 'a whole number from 1 to 31', monthStartDay)
}

/** ARGV 6–8 of the per-call scripts, for limits `checkLimits` passed. */
function quotaArgs(limits: WindowLimits): QuotaArgs {
  const { perDay, perMonth, monthStartDay } = limits
  if (perDay === undefined && perMonth === undefined) return NO_QUOTAS
  return [perDay ?? 0, perMonth ?? 0, monthStartDay ?? 1]
}

/**
 * One decision read from a reply at `at`: the minute's and hour's counts and times to their ends
 * (at+0..3), then each quota the limits set. `flags`: 1 admitted, 2 the minute short of room, 4 the hour.
 */
function decode(reply: number[], at: number, flags: number, limits: WindowLimits, cost: number): LimitDecision {
  const minute = state('minute', limits.perMinute, reply[at]!, reply[at + 1]!)
  const hour = state('hour', limits.perHour, reply[at + 2]!, reply[at + 3]!)
  const ok = (flags & 1) === 1
  const { perDay, perMonth } = limits
  const noQuotas = perDay === undefined && perMonth === undefined
  if (noQuotas && ok) return { admitted: true, minute, hour, retryAfterMs: 0 }
  let retryAfterMs = Math.max(flags & 2 ? minute.resetMs : 0, flags & 4 ? hour.resetMs : 0)
  if (noQuotas) return { admitted: false, minute, hour, retryAfterMs }
  // The quotas follow, day then month, each only when set. One short of room for the cost is
  // waited for until its end (a refused request counted nothing, so the reply's count is before it).
  at += 4
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

/** A per-call reply: admitted, minute count and reset, hour count and reset, minute short, hour short, quotas. */
function decodeOne(reply: number[], limits: WindowLimits, cost: number): LimitDecision {
  const flags = reply[0]! + 2 * reply[5]! + 4 * reply[6]!
  // The per-call reply has the two short flags between the hour and the quotas: move the quotas up.
  if (reply.length > 7) reply.splice(5, 2)
  return decode(reply, 1, flags, limits, cost)
}

interface Waiting {
  readonly key: string
  readonly write: boolean
  readonly limits: WindowLimits
  readonly cost: number
  readonly resolve: (decision: LimitDecision) => void
  readonly reject: (error: unknown) => void
}

/** What a batch sends beyond its first decision: built when a second one joins it. */
interface Encoding {
  readonly keys: string[]
  readonly keyIndex: Map<string, number>
  /** Each distinct limits object once (a tier's limits are one object), by its place in `limitsSpec`. */
  readonly limitsIndex: Map<WindowLimits, number>
  limitsSpec: string
  spec: string
  bytes: number
}

/**
 * The decisions of one turn for one slot. A decision alone in its turn (one connection, a quiet server) goes by the
 * per-call script and needs no encoding: the batch encodes its decisions only once a second one joins, then each as
 * it arrives.
 */
interface Batch {
  readonly node: string
  readonly waiting: Waiting[]
  encoding: Encoding | null
}

interface Scripts {
  /** One decision per call (`coalesce: false`). */
  readonly one: (
    client: Record<string, ScriptCommand>,
    write: boolean,
    key: string,
    limits: WindowLimits,
    cost: number,
    quotas: QuotaArgs,
  ) => Promise<number[]>
  /** A batch: its keys and its decisions' text. */
  readonly batch: (client: Record<string, BatchCommand>, encoding: Encoding) => Promise<number[]>
}

function windowKind(options: RedisLimiterOptions): 'fixed' | 'rolling' {
  const windows = options.windows ?? 'fixed'
  if (windows !== 'fixed' && windows !== 'rolling')
    throw new SaikuConfigError('windows', 'one of "fixed", "rolling"', windows)
  return windows
}

function wholeOption(options: RedisLimiterOptions, name: keyof RedisLimiterOptions, fallback: number): number {
  const value = options[name] ?? fallback
  if (!positive(value)) throw new SaikuConfigError(name, 'a positive integer', value)
  return value
}

/** What the checks threw, as the rejection of the decision's promise (they throw only SaikuErrors). */
const rejected = (error: unknown): Promise<never> =>
  Promise.reject(error instanceof Error ? error : new Error(String(error)))

/**
 * Calls a user's hook so that neither a throw nor a rejection reaches the decision. After the call is sent, not
 * during: a hook that asks the limiter for a decision of its own must not find the batch being sent still open.
 */
function observe(hook: ((decisions: number) => unknown) | undefined, decisions: number): void {
  if (hook === undefined) return
  queueMicrotask(() => {
    try {
      const result = hook(decisions)
      if (result instanceof Promise) result.catch(() => {})
    } catch {
      // A metric's failure is not the decision's.
    }
  })
}

/** Calls of one decision in a row after which a decision that finds nothing pending goes at once (see `loneCalls`). */
const LONE_CALLS = 4

function build(options: RedisLimiterOptions, scripts: Scripts): RedisLimiterBackend {
  const { client } = options
  const prefix = options.keyPrefix ?? 'saiku'
  const maxPendingCalls = wholeOption(options, 'maxPendingCalls', 1_000)
  const nodeDownAfterMs = wholeOption(options, 'nodeDownAfterMs', 500)
  const maxBatchSize = wholeOption(options, 'maxBatchSize', 128)
  const maxBatchBytes = wholeOption(options, 'maxBatchBytes', 65_536)
  const coalesce = options.coalesce ?? true
  if (typeof coalesce !== 'boolean') throw new SaikuConfigError('coalesce', 'true or false', coalesce)
  if (options.onBatch !== undefined && typeof options.onBatch !== 'function')
    throw new SaikuConfigError('onBatch', 'a function', options.onBatch)
  const { onBatch } = options
  let pending = 0
  const breaker = nodeBreakerFor(client, wholeOption(options, 'nodeDownPauseMs', 1_000))
  const isCluster = Array.isArray((client as { slots?: unknown }).slots)
  // The hash tag keeps every key of a tenant in one Cluster slot.
  const keyFor = (tenantKey: string): string => `${prefix}:{${tenantKey}}`
  const commands = client as unknown as Record<string, ScriptCommand> & Record<string, BatchCommand>

  /** The checks every decision passes before it may wait on Redis; the node its key lives on. */
  function admit(key: string, limits: WindowLimits, cost: number): string {
    // A bad limit is the caller's error, thrown before Redis is asked (and never marks the node down).
    checkLimits(limits, cost)
    if (client.status !== 'ready') throw new SaikuStoreError('limiter', `Redis is not connected (${client.status})`)
    if (pending >= maxPendingCalls) throw new SaikuStoreError('limiter', `${pending} Redis calls already pending`)
    const node = breaker.nodeOf(key)
    if (!breaker.allow(node, Date.now()))
      throw new SaikuStoreError('limiter', `Redis node ${node} is down; failing fast`)
    return node
  }

  /** Runs one script call for `node` with the breaker's deadline; its `decisions`, counted in `pending`, leave it when it answers. */
  async function call<T>(node: string, decisions: number, send: () => Promise<T>): Promise<T> {
    const startedOn = breaker.connection()
    // Slow enough to count as down: later calls for this node fail fast, this one still waits for its answer.
    const slow = setTimeout(() => breaker.failed(node, Date.now(), startedOn), nodeDownAfterMs)
    slow.unref?.()
    observe(onBatch, decisions)
    try {
      const reply = await send()
      breaker.succeeded(node)
      return reply
    } catch (error) {
      breaker.failed(node, Date.now(), startedOn)
      throw new SaikuStoreError('limiter', 'Redis rate limit script failed', { cause: error })
    } finally {
      clearTimeout(slow)
      pending -= decisions
    }
  }

  async function runOne(write: boolean, tenantKey: string, limits: WindowLimits, cost: number): Promise<LimitDecision> {
    const key = keyFor(tenantKey)
    const node = admit(key, limits, cost)
    pending++
    const reply = await call(node, 1, () => scripts.one(commands, write, key, limits, cost, quotaArgs(limits)))
    return decodeOne(reply, limits, cost)
  }

  // This turn's batches, one per Cluster slot (one in all for a single Redis), sent when the turn ends.
  const open = new Map<number, Batch>()
  let flushScheduled = false
  /*
   * Calls in a row that carried one decision each. While the last LONE_CALLS did, the server is answering one request
   * at a time (one connection, a quiet hour): a decision that finds nothing pending goes at once, since waiting for the
   * turn's end would gather nothing and cost it a loop pass. The first call that carries two ends that: under load,
   * sending the first decision of a turn alone would split the turn in two, and halve every batch after it.
   */
  let loneCalls = 0
  // Gathered until the turn's I/O callbacks have all run: every request read in this turn joins.
  const flush = (): void => {
    flushScheduled = false
    for (const batch of open.values()) send(batch)
    open.clear()
  }

  function send(batch: Batch): void {
    const { waiting } = batch
    loneCalls = waiting.length === 1 ? loneCalls + 1 : 0
    if (waiting.length === 1) {
      // Alone in its turn (one connection, a quiet server): the per-call script, which parses and builds less.
      const { key, write, limits, cost, resolve, reject } = waiting[0]!
      call(batch.node, 1, () => scripts.one(commands, write, key, limits, cost, quotaArgs(limits))).then(
        (reply) => resolve(decodeOne(reply, limits, cost)),
        reject,
      )
      return
    }
    const encoding = batch.encoding!
    call(batch.node, waiting.length, () => scripts.batch(commands, encoding)).then(
      (reply) => {
        let at = 0
        for (const { limits, cost, resolve } of waiting) {
          resolve(decode(reply, at + 1, reply[at]!, limits, cost))
          at += 5 + (limits.perDay === undefined ? 0 : 2) + (limits.perMonth === undefined ? 0 : 2)
        }
      },
      (error: unknown) => {
        for (const { reject } of waiting) reject(error)
      },
    )
  }

  /** Adds a decision to `encoding`: its key and limits if new, then its 4 numbers. */
  function encode(encoding: Encoding, { key, limits, cost, write }: Waiting): void {
    let index = encoding.keyIndex.get(key)
    if (index === undefined) {
      encoding.keys.push(key)
      index = encoding.keys.length
      encoding.keyIndex.set(key, index)
      encoding.bytes += Buffer.byteLength(key) + 8
    }
    let limitsAt = encoding.limitsIndex.get(limits)
    if (limitsAt === undefined) {
      // Whole numbers, checked by admit (see BATCH_SCRIPT).
      const { perMinute, perHour, perDay, perMonth, monthStartDay } = limits
      const text = `${perMinute} ${perHour} ${perDay ?? 0} ${perMonth ?? 0} ${monthStartDay ?? 1} `
      encoding.limitsSpec += text
      encoding.bytes += text.length
      limitsAt = encoding.limitsIndex.size + 1
      encoding.limitsIndex.set(limits, limitsAt)
    }
    const text = `${index} ${cost} ${limitsAt} ${write ? 1 : 0} `
    encoding.spec += text
    encoding.bytes += text.length
  }

  /** A batch's encoding, with its first decision in it: made when a second decision is about to join. */
  function encodingOf(batch: Batch): Encoding {
    if (batch.encoding !== null) return batch.encoding
    // The batch's fixed arguments (the key count, both lengths, the time in tests) count too.
    const encoding: Encoding = {
      keys: [],
      keyIndex: new Map(),
      limitsIndex: new Map(),
      limitsSpec: '',
      spec: '',
      bytes: 48,
    }
    encode(encoding, batch.waiting[0]!)
    batch.encoding = encoding
    return encoding
  }

  function enqueue(write: boolean, tenantKey: string, limits: WindowLimits, cost: number): Promise<LimitDecision> {
    if (pending === 0 && loneCalls >= LONE_CALLS) {
      loneCalls++
      return runOne(write, tenantKey, limits, cost)
    }
    const key = keyFor(tenantKey)
    const node = admit(key, limits, cost)
    const slot = isCluster ? keySlot(key) : 0
    let batch = open.get(slot)
    let encoding: Encoding | null = null
    if (batch !== undefined) {
      let full = batch.waiting.length >= maxBatchSize
      if (!full) {
        encoding = encodingOf(batch)
        // At most: a decision's 4 numbers, its key if new, its limits if new (5 safe integers).
        const adds =
          40 +
          (encoding.keyIndex.has(key) ? 0 : Buffer.byteLength(key) + 8) +
          (encoding.limitsIndex.has(limits) ? 0 : 90)
        full = encoding.bytes + adds > maxBatchBytes
      }
      if (full) {
        // Full: it goes now, and this decision starts the slot's next batch.
        open.delete(slot)
        send(batch)
        batch = undefined
        encoding = null
      }
    }
    if (batch === undefined) {
      batch = { node, waiting: [], encoding: null }
      open.set(slot, batch)
    }
    pending++
    let waiting: Waiting
    const decided = new Promise<LimitDecision>((resolve, reject) => {
      waiting = { key, write, limits, cost, resolve, reject }
    })
    batch.waiting.push(waiting!)
    if (encoding !== null) encode(encoding, waiting!)
    if (!flushScheduled) {
      flushScheduled = true
      setImmediate(flush)
    }
    return decided
  }

  const decide = coalesce ? enqueue : runOne
  return {
    windows: options.windows ?? 'fixed',
    keyFor,
    get pendingCalls() {
      return pending
    },
    // Not async functions: one promise per decision, not two; what the checks throw still arrives as a rejection.
    consume: (tenantKey, limits, cost = 1) => {
      try {
        return decide(true, tenantKey, limits, cost)
      } catch (error) {
        return rejected(error)
      }
    },
    peek: (tenantKey, limits) => {
      try {
        return decide(false, tenantKey, limits, 1)
      } catch (error) {
        return rejected(error)
      }
    },
  }
}

/** The scripts' calls: ARGV as the scripts read them, and the time last in tests. */
function scripts(
  names: { consume: string; peek: string; batch: string },
  minuteMs: number,
  hourMs: number,
  now?: () => number,
): Scripts {
  return {
    one: (redis, write, key, limits, cost, quotas) => {
      const command = redis[write ? names.consume : names.peek]!
      const { perMinute, perHour } = limits
      // Without quotas the script reads ARGV 6–8 as 0: limits without them send what they always did.
      if (now === undefined && quotas === NO_QUOTAS)
        return command.call(redis, key, perMinute, perHour, minuteMs, hourMs, cost)
      const [perDay, perMonth, monthStartDay] = quotas
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
    },
    batch: (redis, { keys, limitsSpec, spec }) => {
      const command = redis[names.batch]!
      if (now === undefined) return command.call(redis, keys.length, ...keys, minuteMs, hourMs, limitsSpec, spec)
      return command.call(redis, keys.length, ...keys, minuteMs, hourMs, limitsSpec, spec, now())
    },
  }
}

function define(client: RedisScriptClient, name: string, lua: string, numberOfKeys?: number): void {
  // defineCommand sends EVALSHA and falls back to EVAL once when the script cache was flushed.
  if (typeof (client as unknown as Record<string, unknown>)[name] !== 'function')
    client.defineCommand(name, numberOfKeys === undefined ? { lua } : { numberOfKeys, lua })
  if (numberOfKeys === undefined) keepOffClusterAutoPipeline(client, name)
}

/**
 * On a Cluster client with auto-pipelining, ioredis groups a call by the slot of its first argument. A batch's first
 * argument is its key count, not a key: grouped by the slot of "2", batches for different nodes met in one pipeline,
 * which ioredis refuses whole ("All keys in the pipeline should belong to the same slots allocation group"). Its batch
 * calls skip auto-pipelining (ioredis's `autoPipeliningIgnoredCommands`); they are one call per slot and turn already.
 * The per-call scripts name their key first and stay pipelined.
 */
function keepOffClusterAutoPipeline(client: RedisScriptClient, name: string): void {
  const { slots, options } = client as {
    slots?: unknown
    options?: { enableAutoPipelining?: boolean; autoPipeliningIgnoredCommands?: string[] }
  }
  if (!Array.isArray(slots) || options?.enableAutoPipelining !== true) return
  const ignored = options.autoPipeliningIgnoredCommands ?? []
  if (!ignored.includes(name)) options.autoPipeliningIgnoredCommands = [...ignored, name]
}

/**
 * The Redis backend: the decisions of one event-loop turn go to Redis in one script call
 * (EVALSHA) per Cluster slot, which decides each one's windows (minute, hour, and the day and
 * month quotas when its limits set them), all or nothing, in arrival order.
 */
export function createRedisLimiter(options: RedisLimiterOptions): RedisLimiterBackend {
  const { client } = options
  if (windowKind(options) === 'rolling') {
    define(client, 'saikuRollingConsume', ROLLING_CONSUME_SCRIPT, 1)
    define(client, 'saikuRollingPeek', ROLLING_PEEK_SCRIPT, 1)
    define(client, 'saikuRollingBatch', ROLLING_BATCH_SCRIPT)
    const names = { consume: 'saikuRollingConsume', peek: 'saikuRollingPeek', batch: 'saikuRollingBatch' }
    return build(options, scripts(names, 60_000, 3_600_000))
  }
  define(client, 'saikuConsume', CONSUME_SCRIPT, 1)
  define(client, 'saikuPeek', PEEK_SCRIPT, 1)
  define(client, 'saikuBatch', BATCH_SCRIPT)
  return build(options, scripts({ consume: 'saikuConsume', peek: 'saikuPeek', batch: 'saikuBatch' }, 60_000, 3_600_000))
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
  const names = rolling
    ? { consume: 'saikuRollingConsumeAt', peek: 'saikuRollingPeekAt', batch: 'saikuRollingBatchAt' }
    : { consume: 'saikuConsumeAt', peek: 'saikuPeekAt', batch: 'saikuBatchAt' }
  define(client, names.consume, rolling ? GIVEN_TIME_SCRIPTS.rollingConsume : GIVEN_TIME_SCRIPTS.consume, 1)
  define(client, names.peek, rolling ? GIVEN_TIME_SCRIPTS.rollingPeek : GIVEN_TIME_SCRIPTS.peek, 1)
  define(client, names.batch, rolling ? GIVEN_TIME_SCRIPTS.rollingBatch : GIVEN_TIME_SCRIPTS.batch)
  return build(options, scripts(names, options.minuteMs ?? 60_000, options.hourMs ?? 3_600_000, now))
}
