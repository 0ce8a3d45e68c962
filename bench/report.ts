import type { FloorDistance as InProcessFloorDistance } from './inprocess.js'
import { renderFloorProfiles, type FloorProfile } from './shares.js'
import type { Distance } from './stats.js'
import { ABOVE_HASHING_FLOOR_TARGET_MICROS } from './variants.js'
import type { DecisionCost, FloodResult, RedisCost } from './micro.js'
import { QUOTA_TARGET_MICROS, renderQuotaCost, type QuotaCost } from './quotas.js'
import { renderUsageHistoryCost, USAGE_HISTORY_TARGET_MICROS, type UsageHistoryCost } from './usage-history.js'
import { redisBackendGates, renderRedisBackend, type RedisBackendResult } from './redis-backend.js'
import { renderRedisQuotaCost, type RedisQuotaCost } from './redis-quota.js'

export interface VariantSummary {
  readonly label: string
  readonly baseline: string | null
  readonly rps: number
  readonly cpuMicrosPerRequest: number
  readonly p50Ms: number
  readonly p99Ms: number
  /** Median over rounds of this round's req/s over its bare framework's. */
  readonly ratioToBaseline: number | null
  /** Median over rounds of the server CPU per request beyond its bare framework's. */
  readonly addedCpuMicros: number | null
}

export interface FloorDistance {
  readonly framework: string
  readonly saikuAddedCpuMicros: number
  readonly floorAddedCpuMicros: number
  readonly distanceCpuMicros: number
  /** The hashing floor's added CPU, and saikuAuth above it: absent from runs made before the HTTP rounds had it. */
  readonly hashingFloorAddedCpuMicros?: number
  readonly aboveHashingFloorCpuMicros?: number
}

export interface BenchResults {
  readonly date: string
  readonly quick: boolean
  readonly machine: { readonly cores: number; readonly model: string; readonly node: string }
  readonly settings: Record<string, number>
  readonly summaries: Record<string, VariantSummary>
  readonly expressVersusPopularStack: number
  /**
   * Per framework, saikuAuth's added CPU beside the floor's (both over the bare framework)
   * and the distance between them: the median over rounds of saikuAuth's CPU per request
   * minus the floor's in the same round. Absent from runs made before the floor was measured.
   */
  readonly floors?: readonly FloorDistance[]
  /**
   * The same distance without sockets: each framework's saikuAuth, floor and control apps called
   * in one process, in rotating batches. Absent from runs made before it was measured.
   */
  readonly inProcessFloors?: readonly InProcessFloorDistance[]
  /**
   * saikuAuth's and the floor's CPU per request by owner, from CPU profiles of both in one
   * process. Absent from runs made before they were profiled together.
   */
  readonly floorProfiles?: readonly FloorProfile[]
  readonly rounds: {
    round: number
    stealPercent: number
    noisy: boolean
    variants: Record<string, { rps: number; cpuMicrosPerRequest: number; p50Ms: number; p99Ms: number }>
  }[]
  readonly decisions: DecisionCost[]
  /** What day and month quotas add to a decision in memory. Absent from runs made before quotas. */
  readonly quotas?: QuotaCost
  /** What recording usage history adds to a decision, and its buckets' memory at the bound. Absent from runs made before it. */
  readonly usageHistory?: UsageHistoryCost
  /** The same on the Redis limiter, the Node process's CPU. Absent without Redis or from runs made before quotas. */
  readonly redisQuotas?: RedisQuotaCost
  /** The Redis backend beside memory over HTTP, Node and redis-server CPU. Absent without Redis or from older runs. */
  readonly redisBackend?: RedisBackendResult
  readonly redis: RedisCost | null
  readonly flood: FloodResult
}

const fixed = (value: number, digits: number) => (Number.isFinite(value) ? value.toFixed(digits) : '–')
const thousands = (value: number) => Math.round(value).toLocaleString('en-US')

export function renderMarkdown(results: BenchResults): string {
  const lines = [
    `Measured ${results.date.slice(0, 10)} on ${results.machine.cores} cores (${results.machine.model}), Node ${results.machine.node}` +
      `${results.quick ? ', quick run' : ''}: ${results.rounds.length} interleaved rounds of ${results.settings.durationSeconds} s ` +
      `at ${results.settings.connections} connections; latency at a fixed ${results.settings.fixedRate} req/s.`,
    '',
    '| server | req/s | × bare framework | server CPU µs/req | added µs/req | p50 ms | p99 ms |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ]
  for (const summary of Object.values(results.summaries)) {
    lines.push(
      `| ${summary.label} | ${thousands(summary.rps)} | ${summary.ratioToBaseline === null ? '1 (baseline)' : fixed(summary.ratioToBaseline, 2)} | ` +
        `${fixed(summary.cpuMicrosPerRequest, 1)} | ${summary.addedCpuMicros === null ? '–' : fixed(summary.addedCpuMicros, 1)} | ` +
        `${fixed(summary.p50Ms, 2)} | ${fixed(summary.p99Ms, 2)} |`,
    )
  }
  if (results.floors !== undefined && results.floors.length > 0) {
    lines.push(
      '',
      '| framework | saikuAuth added CPU µs/req | the floor added CPU µs/req | the hashing floor added CPU µs/req | saikuAuth above the floor, µs/req | saikuAuth above the hashing floor, µs/req |',
      '| --- | ---: | ---: | ---: | ---: | ---: |',
    )
    for (const floor of results.floors) {
      lines.push(
        `| ${floor.framework} | ${fixed(floor.saikuAddedCpuMicros, 1)} | ${fixed(floor.floorAddedCpuMicros, 1)} | ` +
          `${fixed(floor.hashingFloorAddedCpuMicros ?? NaN, 1)} | ${fixed(floor.distanceCpuMicros, 1)} | ` +
          `${fixed(floor.aboveHashingFloorCpuMicros ?? NaN, 1)} |`,
      )
    }
  }
  if (results.inProcessFloors !== undefined && results.inProcessFloors.length > 0) {
    const plusMinus = (distance: Distance | undefined) =>
      distance === undefined ? '–' : `${fixed(distance.meanMicros, 2)} ± ${fixed(distance.plusMinusMicros, 2)}`
    lines.push(
      '',
      'Without sockets: one process serves five apps of a framework (saikuAuth, the floor, the floor again as a control, ' +
        'the hashing floor: the floor plus one SHA-256 of the token and a constant-time digest compare, and saikuAuth’s ' +
        'adapter around the floor’s decision), each called with a ' +
        'fresh request and response in batches of about 3 ms, in an order that rotates round by round; CPU of the whole ' +
        'process, µs per request above the floor, mean ± 95 %. The loop turns after each batch, as a server’s does ' +
        'between requests, and the CPU of those turns, where most collections run, is shared out by the bytes each app ' +
        'allocated (' +
        results.inProcessFloors
          .map(
            (floor) =>
              `${floor.framework}: saikuAuth ${thousands(floor.saikuBytes)} B, the floor ${thousands(floor.floorBytes)} B ` +
              `per request; ${fixed(floor.betweenBatchesCpuMicros, 2)} µs per request between batches`,
          )
          .join('; ') +
        ').',
      '',
      '| framework | saikuAuth µs/req | the floor µs/req | saikuAuth above the floor | median of rounds | of it, the hashing floor | saikuAuth above the hashing floor | of it, the adapter | control: the floor again |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    )
    for (const floor of results.inProcessFloors) {
      lines.push(
        `| ${floor.framework} | ${fixed(floor.saikuCpuMicros, 1)} | ${fixed(floor.floorCpuMicros, 1)} | ` +
          `${plusMinus(floor.aboveFloor)} | ${fixed(floor.aboveFloor.medianMicros, 2)} | ${plusMinus(floor.hashingFloor)} | ` +
          `${plusMinus(floor.aboveHashingFloor)} | ` +
          `${plusMinus(floor.adapter)} | ${plusMinus(floor.control)} (${floor.rounds} rounds of ${floor.batch}, ${floor.processes} processes) |`,
      )
    }
  }
  if (results.floorProfiles !== undefined && results.floorProfiles.length > 0)
    lines.push('', ...renderFloorProfiles(results.floorProfiles))
  if (Number.isFinite(results.expressVersusPopularStack)) {
    lines.push(
      '',
      `Express + saikuAuth serves ${fixed(results.expressVersusPopularStack, 2)}× the requests of Express + passport-http-bearer + express-rate-limit (median of per-round ratios).`,
    )
  }
  lines.push('', '| one decision (`check()`, as the adapters call it), in process | ns |', '| --- | ---: |')
  for (const decision of results.decisions) lines.push(`| ${decision.name} | ${thousands(decision.nsPerDecision)} |`)
  if (results.quotas !== undefined) lines.push('', ...renderQuotaCost(results.quotas).split('\n'))
  if (results.usageHistory !== undefined) lines.push('', ...renderUsageHistoryCost(results.usageHistory).split('\n'))
  if (results.redisQuotas !== undefined) lines.push('', ...renderRedisQuotaCost(results.redisQuotas).split('\n'))
  if (results.redisBackend !== undefined) lines.push('', ...renderRedisBackend(results.redisBackend, false).split('\n'))
  if (results.redis !== null) {
    const { redis } = results
    lines.push(
      '',
      '| Redis per admitted request | round trips | commands |',
      '| --- | ---: | ---: |',
      `| @saiku/redis (one script, both windows) | ${fixed(redis.roundTripsPerRequest, 2)} | ${fixed(redis.commandsPerRequest, 2)} |`,
      `| @saiku/redis, rolling windows (one script, both windows) | ${fixed(redis.rolling.roundTripsPerRequest, 2)} | ${fixed(redis.rolling.commandsPerRequest, 2)} |`,
      `| two rate-limiter-flexible RateLimiterRedis | ${fixed(redis.rateLimiterFlexibleTwoLimiters.roundTripsPerRequest, 2)} | ${fixed(redis.rateLimiterFlexibleTwoLimiters.commandsPerRequest, 2)} |`,
    )
  }
  const { flood } = results
  lines.push(
    '',
    `A flood of ${thousands(flood.count)} distinct random keys from as many client addresses (and as many tenants through the memory limiter) ` +
      `grew the heap by ${fixed(flood.heapGrowthMb, 1)} MB: ${thousands(flood.stats.cachedKeys)} keys cached (cap ${thousands(flood.cap)}), ` +
      `${thousands(flood.stats.countedClients ?? 0)} clients and ${thousands(flood.limiterTenants)} tenants counted (caps 100,000).`,
  )
  lines.push('', '| target | measured | met |', '| --- | ---: | :---: |')
  for (const target of checkTargets(results))
    lines.push(
      `| ${target.name} | ${target.measured} | ${target.met ? 'yes' : 'no'}${target.gated ? '' : ' (reported, not gated)'} |`,
    )
  const noisy = results.rounds.filter((round) => round.noisy)
  lines.push(
    '',
    `Steal time per round: ${results.rounds.map((round) => `${fixed(round.stealPercent, 1)}%${round.noisy ? ' (noisy)' : ''}`).join(', ')}.` +
      (noisy.length > 0 ? ` Rounds marked noisy had more than 5% of the CPU taken by the host.` : ''),
    '',
  )
  return lines.join('\n')
}

const escapeXml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** A horizontal bar chart of each variant's throughput ratio to its bare framework. */
export function renderSvg(results: BenchResults): string {
  const bars = Object.values(results.summaries).filter((s) => s.ratioToBaseline !== null)
  const width = 820
  const labelWidth = 390
  const barMax = width - labelWidth - 70
  const rowHeight = 34
  const top = 40
  const height = top + bars.length * rowHeight + 30
  const scale = Math.max(1.2, ...bars.map((b) => b.ratioToBaseline!))
  const x = (ratio: number) => labelWidth + (ratio / scale) * barMax
  const rows = bars
    .map((bar, i) => {
      const y = top + i * rowHeight
      const ratio = bar.ratioToBaseline!
      const colour = bar.label.includes('saikuAuth') ? '#2f6fdf' : '#9aa3ad'
      return [
        `<text x="${labelWidth - 10}" y="${y + 18}" text-anchor="end">${escapeXml(bar.label)}</text>`,
        `<rect x="${labelWidth}" y="${y + 4}" width="${(x(ratio) - labelWidth).toFixed(1)}" height="20" fill="${colour}"/>`,
        `<text x="${(x(ratio) + 6).toFixed(1)}" y="${y + 18}">${ratio.toFixed(2)}×</text>`,
      ].join('')
    })
    .join('\n  ')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="13">
  <rect width="100%" height="100%" fill="#ffffff"/>
  <text x="${width / 2}" y="22" text-anchor="middle" font-weight="bold">Throughput relative to the bare framework (median of per-round ratios)</text>
  <line x1="${x(1).toFixed(1)}" y1="${top - 4}" x2="${x(1).toFixed(1)}" y2="${height - 24}" stroke="#333" stroke-dasharray="4 3"/>
  <text x="${x(1).toFixed(1)}" y="${height - 8}" text-anchor="middle">1.0× = bare</text>
  ${rows}
</svg>
`
}

export interface TargetCheck {
  readonly name: string
  readonly measured: string
  readonly met: boolean
  /** False for a measure reported beside a target it is not held to. */
  readonly gated: boolean
}

/** The performance targets, checked against one run's medians. */
export function checkTargets(results: BenchResults): TargetCheck[] {
  const s = results.summaries
  const decision = (name: string) => results.decisions.find((d) => d.name.startsWith(name))?.nsPerDecision ?? NaN
  const checks: TargetCheck[] = []
  const ratio = (name: string, variant: string, minimum: number) => {
    const value = s[variant]?.ratioToBaseline
    if (value != null)
      checks.push({
        name: `${name} ≥ ${minimum}×`,
        measured: `${fixed(value, 2)}×`,
        met: value >= minimum,
        gated: true,
      })
  }
  for (const variant of ['express+saiku', 'koa+saiku']) {
    const added = s[variant]?.addedCpuMicros
    if (added != null)
      checks.push({
        name: `${s[variant]!.label}: added server CPU ≤ 6 µs per request`,
        measured: `${fixed(added, 1)} µs`,
        met: added <= 6,
        gated: true,
      })
  }
  for (const floor of results.floors ?? []) {
    const distance = floor.distanceCpuMicros
    checks.push({
      name: `${floor.framework} + saikuAuth: server CPU above the floor ≤ 3 µs per request`,
      measured: `${fixed(distance, 1)} µs`,
      met: distance <= 3,
      gated: true,
    })
  }
  for (const floor of results.inProcessFloors ?? []) {
    const { meanMicros, plusMinusMicros } = floor.aboveFloor
    checks.push({
      name: `${floor.framework} + saikuAuth: CPU above the floor ≤ 3 µs per request, without sockets`,
      measured: `${fixed(meanMicros, 2)} ± ${fixed(plusMinusMicros, 2)} µs`,
      met: meanMicros <= 3,
      gated: true,
    })
  }
  // The paired, interleaved difference without sockets: its 95 % interval's upper end must be under the target.
  for (const floor of results.inProcessFloors ?? []) {
    if (floor.aboveHashingFloor === undefined) continue
    const { meanMicros, plusMinusMicros } = floor.aboveHashingFloor
    const upper = meanMicros + plusMinusMicros
    checks.push({
      name: `${floor.framework} + saikuAuth: CPU above the hashing floor < ${ABOVE_HASHING_FLOOR_TARGET_MICROS} µs per request (upper end of the 95 % interval), without sockets`,
      measured: `${fixed(meanMicros, 2)} ± ${fixed(plusMinusMicros, 2)} µs (upper ${fixed(upper, 2)})`,
      met: upper < ABOVE_HASHING_FLOOR_TARGET_MICROS,
      gated: floor.gated ?? false,
    })
  }
  ratio('Koa + saikuAuth vs bare Koa', 'koa+saiku', 0.8)
  ratio('Express + saikuAuth vs bare Express', 'express+saiku', 0.95)
  // Absent from a run that left out either variant.
  if (Number.isFinite(results.expressVersusPopularStack)) {
    checks.push({
      name: 'Express + saikuAuth vs the popular stack ≥ 1.5×',
      measured: `${fixed(results.expressVersusPopularStack, 2)}×`,
      met: results.expressVersusPopularStack >= 1.5,
      gated: true,
    })
  }
  checks.push({
    name: 'one cache-hit decision ≤ 2 µs',
    measured: `${fixed(decision('cache hit') / 1000, 2)} µs`,
    met: decision('cache hit') <= 2_000,
    gated: true,
  })
  checks.push({
    name: 'a garbage token refused ≤ 1 µs',
    measured: `${fixed(decision('garbage') / 1000, 2)} µs`,
    met: decision('garbage') <= 1_000,
    gated: true,
  })
  if (results.quotas !== undefined) {
    const { meanMicros, plusMinusMicros } = results.quotas.limiterDifference
    checks.push({
      name: `day and month quotas on the memory limiter: upper end of the 95 % interval ≤ ${QUOTA_TARGET_MICROS} µs a decision`,
      measured: `${fixed(meanMicros + plusMinusMicros, 3)} µs`,
      met: meanMicros + plusMinusMicros <= QUOTA_TARGET_MICROS,
      gated: true,
    })
  }
  if (results.usageHistory !== undefined) {
    const { meanMicros, plusMinusMicros } = results.usageHistory.difference
    checks.push({
      name: `usage history recorded: upper end of the 95 % interval ≤ ${USAGE_HISTORY_TARGET_MICROS} µs a decision`,
      measured: `${fixed(meanMicros + plusMinusMicros, 3)} µs`,
      met: meanMicros + plusMinusMicros <= USAGE_HISTORY_TARGET_MICROS,
      gated: true,
    })
    const { pendingAfterMore, maxPendingBuckets } = results.usageHistory.memory
    checks.push({
      name: 'usage history under 200,000 distinct keys: at most maxPendingBuckets buckets held',
      measured: `${pendingAfterMore} of ${maxPendingBuckets}`,
      met: pendingAfterMore <= maxPendingBuckets,
      gated: true,
    })
  }
  if (results.redisQuotas !== undefined) {
    const { meanMicros, plusMinusMicros } = results.redisQuotas.extra
    checks.push({
      name: `day and month quotas on the Redis limiter, Node CPU: upper end of the 95 % interval ≤ ${results.redisQuotas.targetMicros} µs a decision`,
      measured: `${fixed(meanMicros + plusMinusMicros, 3)} µs`,
      met: meanMicros + plusMinusMicros <= results.redisQuotas.targetMicros,
      gated: true,
    })
  }
  if (results.redis !== null) {
    checks.push({
      name: 'Redis: one round trip per admitted request',
      measured: fixed(results.redis.roundTripsPerRequest, 2),
      met: results.redis.roundTripsPerRequest === 1,
      gated: true,
    })
    checks.push({
      name: 'Redis, rolling windows: one round trip per admitted request',
      measured: fixed(results.redis.rolling.roundTripsPerRequest, 2),
      met: results.redis.rolling.roundTripsPerRequest === 1,
      gated: true,
    })
    checks.push({
      name: `Redis: fewer commands than two rate-limiter-flexible limiters (${fixed(results.redis.rateLimiterFlexibleTwoLimiters.commandsPerRequest, 0)})`,
      measured: fixed(results.redis.commandsPerRequest, 2),
      met: results.redis.commandsPerRequest < results.redis.rateLimiterFlexibleTwoLimiters.commandsPerRequest,
      gated: true,
    })
    ratio('Express + saikuAuth (Redis) vs bare Express', 'express+saiku+redis', 0.8)
  }
  for (const gate of results.redisBackend === undefined ? [] : redisBackendGates(results.redisBackend))
    checks.push({ name: `${gate.name} ${gate.target}`, measured: gate.measured, met: gate.met, gated: true })
  return checks
}
