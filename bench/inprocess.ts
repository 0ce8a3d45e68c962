// Server CPU per request without sockets: each variant's request listener, in a
// process of its own, is called with a fresh request and response, in short batches
// that alternate between saikuAuth and the floor. The kernel, the load generator
// and the framework's socket handling, which the HTTP runs share on 2 cores, are
// out of the picture, so what differs is the two middlewares.
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { IncomingMessage, ServerResponse } from 'node:http'
import { Socket } from 'node:net'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { build, type BuiltApp } from './apps.js'
import { FLOORS, type Variant } from './variants.js'

/** One kind of CPU time, µs per request. */
export interface CpuDistance {
  /** Mean over every batch: saikuAuth's, the floor's. */
  readonly saikuCpuMicros: number
  readonly floorCpuMicros: number
  /** Mean over pairs of (saikuAuth − the floor): collections included. */
  readonly aboveFloorMicros: number
  /** Median over pairs of the same difference: what a pair without a collection shows. */
  readonly medianAboveFloorMicros: number
  /** The middle half of the pairs' differences. */
  readonly interquartile: readonly [number, number]
}

export interface FloorDistance {
  readonly framework: string
  readonly pairs: number
  /** Requests per batch (about `batchMs` of the floor's time). */
  readonly batch: number
  /** The whole process: its main thread and the collector's and compiler's threads. */
  readonly process: CpuDistance
  /** The thread that serves the requests, alone: no work of another thread lands in a batch by chance. */
  readonly mainThread: CpuDistance
}

const socket = new Socket()

/** One request through the app; the status it answered. */
async function serve(app: BuiltApp): Promise<number> {
  const req = new IncomingMessage(socket)
  req.method = 'GET'
  req.url = '/me/tenant'
  req.httpVersion = '1.1'
  req.headers = { host: '127.0.0.1', authorization: `Bearer ${app.key}`, accept: '*/*' }
  req.rawHeaders = ['Host', '127.0.0.1', 'Authorization', `Bearer ${app.key}`, 'Accept', '*/*']
  req.complete = true
  const res = new ServerResponse(req)
  if (app.handle !== undefined) await app.handle(req, res)
  else app.listener(req, res)
  // Express answers in the same turn unless something awaited; then wait for the end.
  while (!res.writableEnded) await nextTurn()
  return res.statusCode
}

/** CPU µs per request of one batch: the process's, and its main thread's alone. */
interface BatchCpu {
  readonly process: number
  readonly thread: number
}

/** In the worker: `requests` requests, and the CPU they took. */
async function batch(app: BuiltApp, requests: number): Promise<BatchCpu> {
  const before = process.cpuUsage()
  const threadBefore = process.threadCpuUsage()
  for (let i = 0; i < requests; i++) {
    const status = await serve(app)
    if (status !== 200) throw new Error(`in-process bench: answered ${status}, not 200`)
  }
  // One turn of the loop inside the batch: what the request left for later is counted here.
  await nextTurn()
  const used = process.cpuUsage(before)
  const threadUsed = process.threadCpuUsage(threadBefore)
  return { process: (used.user + used.system) / requests, thread: (threadUsed.user + threadUsed.system) / requests }
}

interface Worker {
  readonly child: ChildProcess
  run(requests: number): Promise<BatchCpu>
}

async function startWorker(variant: Variant): Promise<Worker> {
  const child = fork(fileURLToPath(import.meta.url), ['worker', variant], { execArgv: [], stdio: 'inherit' })
  await once(child, 'message')
  return {
    child,
    async run(requests) {
      child.send({ requests })
      const [message] = (await once(child, 'message')) as [BatchCpu]
      return message
    },
  }
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

const quantile = (values: readonly number[], q: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

const mean = (values: readonly number[]): number => values.reduce((sum, v) => sum + v, 0) / values.length

/**
 * Each framework's saikuAuth and its floor, each in its own process (neither's
 * garbage or compiled code lands on the other), in `pairs` pairs of batches of about
 * `batchMs`; the order flips every pair, so drift falls on both alike.
 */
export async function measureInProcess(pairs: number, batchMs: number): Promise<FloorDistance[]> {
  const distances: FloorDistance[] = []
  for (const { framework, saiku, floor } of FLOORS) {
    const workers = { saiku: await startWorker(saiku), floor: await startWorker(floor) }
    // Warm both up, then size the batches from the floor's speed.
    await workers.saiku.run(20_000)
    const { process: floorMicros } = await workers.floor.run(20_000)
    const requests = Math.max(20, Math.round((batchMs * 1000) / floorMicros))
    const samples = { saiku: [] as BatchCpu[], floor: [] as BatchCpu[] }
    for (let pair = 0; pair < pairs; pair++) {
      const order = pair % 2 === 0 ? (['saiku', 'floor'] as const) : (['floor', 'saiku'] as const)
      for (const name of order) samples[name].push(await workers[name].run(requests))
    }
    for (const worker of Object.values(workers)) worker.child.kill()
    const of = (kind: keyof BatchCpu) => {
      const differences = samples.saiku.map((value, pair) => value[kind] - samples.floor[pair]![kind])
      return {
        saikuCpuMicros: mean(samples.saiku.map((value) => value[kind])),
        floorCpuMicros: mean(samples.floor.map((value) => value[kind])),
        aboveFloorMicros: mean(differences),
        medianAboveFloorMicros: median(differences),
        interquartile: [quantile(differences, 0.25), quantile(differences, 0.75)] as const,
      }
    }
    distances.push({ framework, pairs, batch: requests, process: of('process'), mainThread: of('thread') })
  }
  return distances
}

if (process.argv[2] === 'worker') {
  // `inprocess.js worker <variant>`: builds the app, then runs the batches it is sent.
  const app = await build(process.argv[3] as Variant)
  process.on('message', (message: { requests: number }) => {
    void batch(app, message.requests).then((cpu) => process.send!(cpu))
  })
  process.send!({ ready: true })
} else if (import.meta.url === `file://${process.argv[1]}`) {
  // `node .build/inprocess.js [pairs] [batchMs]`: this measure alone.
  const distances = await measureInProcess(Number(process.argv[2] ?? 400), Number(process.argv[3] ?? 10))
  for (const d of distances) {
    for (const [kind, cpu] of [
      ['process', d.process],
      ['main thread', d.mainThread],
    ] as const) {
      console.log(
        `${d.framework}, ${kind} CPU: saikuAuth ${cpu.saikuCpuMicros.toFixed(2)}, the floor ${cpu.floorCpuMicros.toFixed(2)} µs/req; ` +
          `above the floor ${cpu.aboveFloorMicros.toFixed(2)} (median ${cpu.medianAboveFloorMicros.toFixed(2)}, ` +
          `middle half ${cpu.interquartile[0].toFixed(2)}…${cpu.interquartile[1].toFixed(2)}; ${d.pairs} pairs of ${d.batch})`,
      )
    }
  }
}
