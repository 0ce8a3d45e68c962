// `pnpm --filter @saiku/bench bench:redis [--rounds=30] [--seconds=1]` (`pnpm build` first, `redis-server` on PATH):
// the Redis backend beside the memory backend, for Express and Koa, at 1 and at 32 connections. A redis-server of the
// bench's own (so that no other client's work lands in its CPU), and per variant a server process of its own:
// - memory: saikuAuth with the in-process limiter;
// - redis: the Redis backend as it ships, the decisions of a turn coalesced into one script call;
// - redis-pipelined: the same on a client with ioredis's auto-pipelining on;
// - redis-per-call: one script call per request (`coalesce: false`), what the backend did before coalescing.
// CPU per request of the Node process (its own `process.cpuUsage`) and of redis-server (utime + stime from
// /proc/<pid>/stat, its pid from `INFO server`), from rounds that interleave every variant in a rotating order.
// Differences are taken round by round (both sides saw the same machine), with their 95 % interval.
//
// Pinned where `taskset` exists and there are two CPUs or more: the server under test and redis-server on the first
// CPU this process may use, this process (autocannon, the load) on the others. Unpinned, the scheduler moves the three
// between two CPUs from round to round, and the same server's CPU per request swung from 137 to 317 µs between rounds
// with its throughput (fewer requests read per wake-up cost more each). The host's own swings remain, over seconds:
// many short rounds (30 of 1 s per variant) pair each variant with its neighbours more closely than a few long ones,
// and read about three times finer in the same time as 6 rounds of 3 s. A first round of a second per variant, not
// counted, warms every server and the load generator up.
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { Redis } from 'ioredis'
import { distanceOf, mean, median, type Distance } from './stats.js'
import type { Variant } from './variants.js'

export type RedisBackendKind = 'memory' | 'redis' | 'redis-pipelined' | 'redis-per-call'
const KINDS: readonly RedisBackendKind[] = ['memory', 'redis', 'redis-pipelined', 'redis-per-call']
const FRAMEWORKS = [
  { framework: 'Express', prefix: 'express+saiku' },
  { framework: 'Koa', prefix: 'koa+saiku' },
] as const
const CONNECTIONS = [1, 32] as const

export interface RedisBackendRow {
  readonly framework: 'Express' | 'Koa'
  readonly connections: number
  readonly backend: RedisBackendKind
  /** Medians over rounds. */
  readonly rps: number
  /** Means over rounds, µs per request. */
  readonly nodeCpuMicros: number
  readonly redisCpuMicros: number
}

export interface RedisBackendComparison {
  readonly framework: 'Express' | 'Koa'
  readonly connections: number
  /** The memory backend's Node CPU per request (mean). */
  readonly memoryCpuMicros: number
  /** Node CPU the Redis backend adds over memory, round by round. */
  readonly addedCpu: Distance
  /** The same with one call per request. */
  readonly addedCpuPerCall: Distance
  /** Coalesced minus one call per request, Node CPU. */
  readonly versusPerCall: Distance
  /** redis-server CPU per request, coalesced over one call per request, round by round. */
  readonly redisCpuRatio: Distance
  /** Requests per second over memory's, median of rounds. */
  readonly rpsRatio: number
  readonly rpsRatioPerCall: number
  readonly rpsRatioPipelined: number
}

export interface RedisBackendResult {
  readonly rounds: number
  readonly seconds: number
  /** Absent from runs made before the bench pinned its processes. */
  readonly pinning?: Pinning | null
  readonly rows: readonly RedisBackendRow[]
  readonly comparisons: readonly RedisBackendComparison[]
}

interface Server {
  readonly child: ChildProcess
  readonly port: number
  readonly key: string
}

const here = fileURLToPath(new URL('.', import.meta.url))

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  return port
}

async function startRedis(): Promise<{ url: string; pid: number; stop(): void }> {
  const port = await freePort()
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  )
  const url = `redis://127.0.0.1:${port}`
  for (let attempt = 0; ; attempt++) {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    client.on('error', () => {})
    try {
      await client.connect()
      const info = await client.info('server')
      client.disconnect()
      const pid = Number(/^process_id:(\d+)/m.exec(info)?.[1])
      return { url, pid, stop: () => child.kill() }
    } catch (error) {
      client.disconnect()
      if (attempt > 100) throw new Error(`redis-server did not start on ${url}`, { cause: error })
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
}

const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100

/** utime + stime of a process, in µs, from /proc/<pid>/stat. */
function processCpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // After the command name (in parentheses, which may hold spaces): state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / ticksPerSecond
}

/** Where the bench pins its processes: the CPU of the servers and redis-server, and the load's; null unpinned. */
export interface Pinning {
  readonly serverCpu: string
  readonly loadCpus: string
}

/** The CPUs `pid` may run on, from taskset's list form ("0-3,5"). */
function cpusOf(pid: number): number[] {
  const list = /:\s*(\S+)\s*$/.exec(execFileSync('taskset', ['-pc', String(pid)]).toString())?.[1] ?? ''
  return list.split(',').flatMap((part) => {
    const [from, to = from] = part.split('-').map(Number)
    return Array.from({ length: to! - from! + 1 }, (_, i) => from! + i)
  })
}

/** Every thread of `pid` onto `cpuList` (taskset's list form). */
function pin(pid: number, cpuList: string): void {
  execFileSync('taskset', ['-apc', cpuList, String(pid)], { stdio: 'ignore' })
}

/**
 * Pins this process to all but the first CPU it may use, and says where the servers go; null, unpinned, where
 * taskset is missing, refused, or there is one CPU. `restore` gives this process its CPUs back.
 */
function pinLoad(): (Pinning & { restore(): void }) | null {
  try {
    const allowed = cpusOf(process.pid)
    if (allowed.length < 2 || allowed.some((cpu) => !Number.isInteger(cpu))) return null
    const pinning = { serverCpu: String(allowed[0]), loadCpus: allowed.slice(1).join(',') }
    pin(process.pid, pinning.loadCpus)
    return { ...pinning, restore: () => pin(process.pid, allowed.join(',')) }
  } catch {
    return null
  }
}

async function start(variant: Variant, redisUrl: string): Promise<Server> {
  const child = fork(`${here}server.js`, [variant], {
    execArgv: [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, REDIS_URL: redisUrl },
  })
  const [message] = (await once(child, 'message')) as [{ port: number; key: string }]
  return { child, port: message.port, key: message.key }
}

async function nodeCpuMicros(server: Server): Promise<number> {
  server.child.send({ type: 'cpu' })
  for (;;) {
    const [message] = (await once(server.child, 'message')) as [{ type: string; micros: number }]
    if (message.type === 'cpu') return message.micros
  }
}

async function load(server: Server, seconds: number, connections: number): Promise<number> {
  const result = await autocannon({
    url: `http://127.0.0.1:${server.port}/me/tenant`,
    headers: { authorization: `Bearer ${server.key}` },
    duration: seconds,
    connections,
  })
  if (result.non2xx > 0 || result.errors > 0)
    throw new Error(`${result.non2xx} non-2xx and ${result.errors} errors at ${connections} connections`)
  return result.requests.total
}

const variantOf = (prefix: string, kind: RedisBackendKind): Variant =>
  (kind === 'memory' ? prefix : `${prefix}+${kind}`) as Variant

export async function measureRedisBackend(rounds: number, seconds: number): Promise<RedisBackendResult> {
  const redis = await startRedis()
  const servers = new Map<Variant, Server>()
  const pinned = pinLoad()
  const pinning: Pinning | null = pinned === null ? null : { serverCpu: pinned.serverCpu, loadCpus: pinned.loadCpus }
  try {
    if (pinning !== null) pin(redis.pid, pinning.serverCpu)
    for (const { prefix } of FRAMEWORKS)
      for (const kind of KINDS) {
        const server = await start(variantOf(prefix, kind), redis.url)
        if (pinning !== null) pin(server.child.pid!, pinning.serverCpu)
        servers.set(variantOf(prefix, kind), server)
      }
    type Sample = { rps: number; node: number; redis: number }
    const samples = new Map<string, Sample[]>()
    const at = (variant: Variant, connections: number) => `${variant}@${connections}`
    // Round -1 warms up and is not counted.
    for (let round = -1; round < rounds; round++) {
      const connectionsOrder = round % 2 === 0 ? CONNECTIONS : [...CONNECTIONS].reverse()
      for (const connections of connectionsOrder)
        for (const { prefix } of FRAMEWORKS) {
          // Each kind takes each place in the order equally often.
          const order = KINDS.map((_, i) => KINDS[(i + round + KINDS.length) % KINDS.length]!)
          for (const kind of order) {
            const variant = variantOf(prefix, kind)
            const server = servers.get(variant)!
            const nodeBefore = await nodeCpuMicros(server)
            const redisBefore = processCpuMicros(redis.pid)
            const requests = await load(server, round < 0 ? Math.min(seconds, 1) : seconds, connections)
            const redisAfter = processCpuMicros(redis.pid)
            const nodeAfter = await nodeCpuMicros(server)
            if (round < 0) continue
            const key = at(variant, connections)
            if (!samples.has(key)) samples.set(key, [])
            samples.get(key)!.push({
              rps: requests / seconds,
              node: (nodeAfter - nodeBefore) / requests,
              redis: (redisAfter - redisBefore) / requests,
            })
          }
        }
      console.error(round < 0 ? 'redis section: warmed up' : `redis section: round ${round + 1} of ${rounds}`)
    }
    const rows: RedisBackendRow[] = []
    const comparisons: RedisBackendComparison[] = []
    for (const connections of CONNECTIONS)
      for (const { framework, prefix } of FRAMEWORKS) {
        const of = (kind: RedisBackendKind) => samples.get(at(variantOf(prefix, kind), connections))!
        for (const kind of KINDS) {
          const s = of(kind)
          rows.push({
            framework,
            connections,
            backend: kind,
            rps: median(s.map((x) => x.rps)),
            nodeCpuMicros: mean(s.map((x) => x.node)),
            redisCpuMicros: mean(s.map((x) => x.redis)),
          })
        }
        const memory = of('memory')
        const coalesced = of('redis')
        const perCall = of('redis-per-call')
        const pipelined = of('redis-pipelined')
        comparisons.push({
          framework,
          connections,
          memoryCpuMicros: mean(memory.map((x) => x.node)),
          addedCpu: distanceOf(coalesced.map((x, r) => x.node - memory[r]!.node)),
          addedCpuPerCall: distanceOf(perCall.map((x, r) => x.node - memory[r]!.node)),
          versusPerCall: distanceOf(coalesced.map((x, r) => x.node - perCall[r]!.node)),
          redisCpuRatio: distanceOf(coalesced.map((x, r) => x.redis / perCall[r]!.redis)),
          rpsRatio: median(coalesced.map((x, r) => x.rps / memory[r]!.rps)),
          rpsRatioPerCall: median(perCall.map((x, r) => x.rps / memory[r]!.rps)),
          rpsRatioPipelined: median(pipelined.map((x, r) => x.rps / memory[r]!.rps)),
        })
      }
    return { rounds, seconds, pinning, rows, comparisons }
  } finally {
    for (const server of servers.values()) server.child.send({ type: 'stop' })
    redis.stop()
    pinned?.restore()
  }
}

const upper = (d: Distance): number => d.meanMicros + d.plusMinusMicros
const lower = (d: Distance): number => d.meanMicros - d.plusMinusMicros

/** The gates, each with what was measured: at 32 connections the CPU targets, at 1 no worse than one call per request. */
export function redisBackendGates(
  result: RedisBackendResult,
): { name: string; measured: string; target: string; met: boolean }[] {
  const gates: { name: string; measured: string; target: string; met: boolean }[] = []
  for (const c of result.comparisons) {
    const where = `${c.framework}, ${c.connections} connection${c.connections === 1 ? '' : 's'}`
    if (c.connections === 32) {
      const limit = 0.1 * c.memoryCpuMicros
      gates.push({
        name: `Redis backend, ${where}: Node CPU added over memory, upper end of the 95 % interval`,
        measured: `${upper(c.addedCpu).toFixed(2)} µs`,
        target: `≤ ${limit.toFixed(2)} µs (10 % of memory's ${c.memoryCpuMicros.toFixed(1)} µs)`,
        met: upper(c.addedCpu) <= limit,
      })
      gates.push({
        name: `Redis backend, ${where}: redis-server CPU per request over one call per request, upper end`,
        measured: upper(c.redisCpuRatio).toFixed(2),
        target: '≤ 0.50',
        met: upper(c.redisCpuRatio) <= 0.5,
      })
    } else {
      gates.push({
        name: `Redis backend, ${where}: Node CPU no worse than one call per request (lower end of the difference)`,
        measured: `${c.versusPerCall.meanMicros.toFixed(2)} ± ${c.versusPerCall.plusMinusMicros.toFixed(2)} µs`,
        target: 'lower end ≤ 0',
        met: lower(c.versusPerCall) <= 0,
      })
    }
  }
  return gates
}

/** The tables, and the gates unless the caller lists them with its own (`withGates` false). */
export function renderRedisBackend(result: RedisBackendResult, withGates = true): string {
  const f = (n: number, digits = 1) => n.toFixed(digits)
  const pinned =
    result.pinning === undefined || result.pinning === null
      ? 'unpinned'
      : `the servers and redis-server on CPU ${result.pinning.serverCpu}, the load on CPU ${result.pinning.loadCpus}`
  const lines = [
    `Redis beside memory, ${result.rounds} interleaved rounds of ${result.seconds} s (a redis-server of the bench's own; ${pinned}):`,
    '',
    '| framework | connections | backend | req/s | Node CPU µs/req | redis-server CPU µs/req |',
    '| --- | --- | --- | --- | --- | --- |',
    ...result.rows.map(
      (r) =>
        `| ${r.framework} | ${r.connections} | ${r.backend} | ${Math.round(r.rps)} | ${f(r.nodeCpuMicros, 2)} | ${r.backend === 'memory' ? '–' : f(r.redisCpuMicros, 2)} |`,
    ),
    '',
    '| framework | connections | Node CPU Redis adds (95 %) | one call per request adds | coalesced − per call | redis-server CPU, coalesced / per call | req/s vs memory: coalesced, pipelined, per call |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...result.comparisons.map(
      (c) =>
        `| ${c.framework} | ${c.connections} | ${f(c.addedCpu.meanMicros, 2)} ± ${f(c.addedCpu.plusMinusMicros, 2)} µs (memory ${f(c.memoryCpuMicros)} µs) | ${f(c.addedCpuPerCall.meanMicros, 2)} ± ${f(c.addedCpuPerCall.plusMinusMicros, 2)} µs | ${f(c.versusPerCall.meanMicros, 2)} ± ${f(c.versusPerCall.plusMinusMicros, 2)} µs | ${f(c.redisCpuRatio.meanMicros, 2)} ± ${f(c.redisCpuRatio.plusMinusMicros, 2)} | ${f(c.rpsRatio, 2)}×, ${f(c.rpsRatioPipelined, 2)}×, ${f(c.rpsRatioPerCall, 2)}× |`,
    ),
  ]
  if (withGates)
    lines.push(
      '',
      ...redisBackendGates(result).map((g) => `- ${g.met ? 'met' : 'NOT met'}: ${g.name}: ${g.measured} (${g.target})`),
    )
  return lines.join('\n')
}

const entry = process.argv[1] ?? ''
if (entry.endsWith('redis-backend.js') || entry.endsWith('redis-backend.ts')) {
  const flag = (name: string, fallback: number) => {
    const arg = process.argv.find((a) => a.startsWith(`--${name}=`))
    const value = arg === undefined ? fallback : Number(arg.slice(name.length + 3))
    if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name}: expected a positive number, got ${arg}`)
    return value
  }
  const result = await measureRedisBackend(flag('rounds', 30), flag('seconds', 1))
  console.log(renderRedisBackend(result))
}
