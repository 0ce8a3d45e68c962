// `pnpm bench [--quick] [--rounds=N] [--seconds=N] [--variants=a,b]`: load every variant in interleaved rounds and report
// req/s, server CPU per request, latency at a fixed rate, and ratios to the bare
// framework computed round by round; then in-process decision costs and Redis
// commands per request. Writes results/*.json|md|svg (and, for a full run, the
// copies docs/benchmarks.md shows in docs/benchmarks/).
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { measureInProcess } from './inprocess.js'
import { measureFloorProfiles } from './profile.js'
import { median } from './stats.js'
import { measureDecisions, measureFlood, measureRedisCommands } from './micro.js'
import { measureQuotaCost } from './quotas.js'
import { measureUsageHistoryCost } from './usage-history.js'
import { measureRedisBackend } from './redis-backend.js'
import { measureRedisQuotaCost } from './redis-quota.js'
import { renderMarkdown, renderSvg, type BenchResults, type VariantSummary } from './report.js'
import { FLOORS, REDIS_SECTION_VARIANTS, VARIANTS, type Variant } from './variants.js'

const quick = process.argv.includes('--quick')
const here = fileURLToPath(new URL('.', import.meta.url))
/** `--name=value` from the command line, or undefined. */
const flag = (name: string): string | undefined =>
  process.argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3)
const defaults = quick
  ? { rounds: 2, durationSeconds: 1, warmupSeconds: 0.5, connections: 20, fixedRate: 500, fixedRateSeconds: 1 }
  : { rounds: 7, durationSeconds: 4, warmupSeconds: 2, connections: 32, fixedRate: 2_000, fixedRateSeconds: 3 }
// `--rounds=N` and `--seconds=N` shorten or lengthen a run; `--variants=a,b` loads only those (and their bare frameworks).
const settings = {
  ...defaults,
  rounds: Number(flag('rounds') ?? defaults.rounds),
  durationSeconds: Number(flag('seconds') ?? defaults.durationSeconds),
}
// A partial run is a measurement for the console: it does not replace the published results.
const partial = flag('rounds') !== undefined || flag('seconds') !== undefined || flag('variants') !== undefined

const redisUrl = process.env.REDIS_URL
const chosen = flag('variants')?.split(',') as Variant[] | undefined
for (const name of chosen ?? [])
  if (!(name in VARIANTS))
    throw new Error(`--variants: unknown variant ${name}; known: ${Object.keys(VARIANTS).join(', ')}`)
const variants = (Object.keys(VARIANTS) as Variant[]).filter(
  (v) =>
    (v !== 'express+saiku+redis' || redisUrl !== undefined) &&
    !REDIS_SECTION_VARIANTS.includes(v) &&
    (chosen === undefined || chosen.includes(v) || chosen.some((c) => VARIANTS[c].baseline === v)),
)

interface Server {
  child: ChildProcess
  port: number
  key: string
}

async function start(variant: Variant): Promise<Server> {
  // The servers run the built packages (dist), as users do, with no loader hooks.
  const child = fork(`${here}server.js`, [variant], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const [message] = (await once(child, 'message')) as [{ port: number; key: string }]
  return { child, port: message.port, key: message.key }
}

async function cpuMicros(server: Server): Promise<number> {
  server.child.send({ type: 'cpu' })
  for (;;) {
    const [message] = (await once(server.child, 'message')) as [{ type: string; micros: number }]
    if (message.type === 'cpu') return message.micros
  }
}

/** Fraction of CPU time the hypervisor stole across the machine, from /proc/stat. */
function stealSample(): { steal: number; total: number } {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
    return { steal: fields[7] ?? 0, total: fields.slice(0, 8).reduce((a, b) => a + b, 0) }
  } catch {
    return { steal: 0, total: 0 }
  }
}

function load(
  server: Server,
  options: { duration: number; connections: number; overallRate?: number },
): Promise<autocannon.Result> {
  return autocannon({
    url: `http://127.0.0.1:${server.port}/me/tenant`,
    headers: { authorization: `Bearer ${server.key}` },
    duration: options.duration,
    connections: options.connections,
    ...(options.overallRate === undefined ? {} : { overallRate: options.overallRate }),
  })
}

async function main(): Promise<void> {
  console.error(
    `saiku bench${quick ? ' --quick' : ''}: ${variants.length} variants, ${settings.rounds} rounds of ${settings.durationSeconds} s, ${cpus().length} cores`,
  )
  const servers = new Map<Variant, Server>()
  for (const variant of variants) servers.set(variant, await start(variant))
  for (const [variant, server] of servers) {
    const warm = await load(server, { duration: settings.warmupSeconds, connections: settings.connections })
    if (warm.non2xx > 0 || warm.errors > 0)
      throw new Error(`${variant}: ${warm.non2xx} non-2xx and ${warm.errors} errors while warming up`)
  }

  const perRound: BenchResults['rounds'] = []
  for (let round = 0; round < settings.rounds; round++) {
    const stealBefore = stealSample()
    const measured: Record<string, { rps: number; cpuMicrosPerRequest: number; p50Ms: number; p99Ms: number }> = {}
    for (const variant of variants) {
      const server = servers.get(variant)!
      const cpuBefore = await cpuMicros(server)
      const result = await load(server, { duration: settings.durationSeconds, connections: settings.connections })
      const cpuAfter = await cpuMicros(server)
      if (result.non2xx > 0 || result.errors > 0)
        throw new Error(`${variant}: ${result.non2xx} non-2xx and ${result.errors} errors`)
      const fixed = await load(server, {
        duration: settings.fixedRateSeconds,
        connections: 10,
        overallRate: settings.fixedRate,
      })
      measured[variant] = {
        rps: result.requests.total / settings.durationSeconds,
        cpuMicrosPerRequest: (cpuAfter - cpuBefore) / result.requests.total,
        p50Ms: fixed.latency.p50,
        p99Ms: fixed.latency.p99,
      }
    }
    const stealAfter = stealSample()
    const totalTicks = stealAfter.total - stealBefore.total
    const stealPercent = totalTicks > 0 ? (100 * (stealAfter.steal - stealBefore.steal)) / totalTicks : 0
    perRound.push({ round: round + 1, stealPercent, noisy: stealPercent > 5, variants: measured })
    console.error(
      `round ${round + 1}: steal ${stealPercent.toFixed(1)}%  ` +
        variants.map((v) => `${v} ${Math.round(measured[v]!.rps)}/s`).join('  '),
    )
  }
  for (const server of servers.values()) server.child.send({ type: 'stop' })

  // Ratios are taken inside each round (both sides saw the same machine), then the median over rounds.
  const summaries: Record<string, VariantSummary> = {}
  for (const variant of variants) {
    const baseline = VARIANTS[variant].baseline
    const rows = perRound.map((round) => round.variants[variant]!)
    summaries[variant] = {
      label: VARIANTS[variant].label,
      baseline,
      rps: median(rows.map((r) => r.rps)),
      cpuMicrosPerRequest: median(rows.map((r) => r.cpuMicrosPerRequest)),
      p50Ms: median(rows.map((r) => r.p50Ms)),
      p99Ms: median(rows.map((r) => r.p99Ms)),
      ratioToBaseline:
        baseline === null
          ? null
          : median(perRound.map((round) => round.variants[variant]!.rps / round.variants[baseline]!.rps)),
      addedCpuMicros:
        baseline === null
          ? null
          : median(
              perRound.map(
                (round) => round.variants[variant]!.cpuMicrosPerRequest - round.variants[baseline]!.cpuMicrosPerRequest,
              ),
            ),
    }
  }
  const versusPopular = perRound.map(
    (round) => (round.variants['express+saiku']?.rps ?? NaN) / (round.variants['express+passport+erl']?.rps ?? NaN),
  )
  // saikuAuth's distance to the floor: both run against the same bare framework in each round, so the
  // difference of their added CPU is the difference of their CPU, taken round by round.
  const cpuAbove = (variant: Variant, base: Variant) =>
    median(
      perRound.map((round) => round.variants[variant]!.cpuMicrosPerRequest - round.variants[base]!.cpuMicrosPerRequest),
    )
  const floors: BenchResults['floors'] = FLOORS.filter(
    ({ saiku, floor, hashingFloor }) =>
      variants.includes(saiku) && variants.includes(floor) && variants.includes(hashingFloor),
  ).map(({ framework, saiku, floor, hashingFloor }) => ({
    framework,
    saikuAddedCpuMicros: summaries[saiku]!.addedCpuMicros!,
    floorAddedCpuMicros: summaries[floor]!.addedCpuMicros!,
    hashingFloorAddedCpuMicros: summaries[hashingFloor]!.addedCpuMicros!,
    distanceCpuMicros: cpuAbove(saiku, floor),
    aboveHashingFloorCpuMicros: cpuAbove(saiku, hashingFloor),
  }))

  // Without sockets, only for a run that loads every framework's saikuAuth and both its floors.
  const inProcessFloors = FLOORS.every(
    ({ saiku, floor, hashingFloor }) =>
      variants.includes(saiku) && variants.includes(floor) && variants.includes(hashingFloor),
  )
    ? await measureInProcess(quick ? 30 : 3000, 3, quick ? 2 : 3, quick ? 2_000 : 20_000)
    : undefined
  // Where the distance goes, by CPU profile: with the measure without sockets, whose apps it serves the same way.
  // Sampled every 100 µs: a quick run still profiles enough requests that a 0.2 µs share gets tens of samples, never none.
  const floorProfiles =
    inProcessFloors === undefined
      ? undefined
      : await measureFloorProfiles(quick ? 20_000 : 50_000, quick ? 1 : 3, quick ? 2_000 : 20_000)
  const decisions = await measureDecisions(quick)
  const quotas = await measureQuotaCost(quick)
  const usageHistory = await measureUsageHistoryCost(quick)
  const redis = redisUrl === undefined ? null : await measureRedisCommands(redisUrl, quick || partial ? 50 : 500)
  const redisQuotas =
    redisUrl === undefined ? undefined : await measureRedisQuotaCost(redisUrl, quick ? 10 : 100, quick ? 2_000 : 40_000)
  // Against a redis-server of its own (on PATH), so that only the bench's work lands in its CPU.
  const redisBackend = redisUrl === undefined ? undefined : await measureRedisBackend(quick ? 2 : 30, 1)
  const flood = await measureFlood(quick || partial ? 20_000 : 1_000_000)

  const results: BenchResults = {
    date: new Date().toISOString(),
    quick,
    machine: { cores: cpus().length, model: cpus()[0]?.model ?? 'unknown', node: process.version },
    settings,
    summaries,
    expressVersusPopularStack: median(versusPopular),
    floors,
    ...(inProcessFloors === undefined ? {} : { inProcessFloors }),
    ...(floorProfiles === undefined ? {} : { floorProfiles }),
    rounds: perRound,
    decisions,
    quotas,
    usageHistory,
    redis,
    ...(redisQuotas === undefined ? {} : { redisQuotas }),
    ...(redisBackend === undefined ? {} : { redisBackend }),
    flood,
  }
  const out = `${here}../results`
  mkdirSync(out, { recursive: true })
  writeFileSync(`${out}/latest.json`, `${JSON.stringify(results, null, 2)}\n`)
  const markdown = renderMarkdown(results)
  writeFileSync(`${out}/latest.md`, markdown)
  writeFileSync(`${out}/ratios.svg`, renderSvg(results))
  if (!quick && !partial) {
    const docs = `${here}../../docs/benchmarks`
    mkdirSync(docs, { recursive: true })
    writeFileSync(`${docs}/results.json`, `${JSON.stringify(results, null, 2)}\n`)
    writeFileSync(`${docs}/results.md`, markdown)
    writeFileSync(`${docs}/ratios.svg`, renderSvg(results))
  }
  process.stdout.write(markdown)
}

await main()
