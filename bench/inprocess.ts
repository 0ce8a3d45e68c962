// Server CPU per request without sockets. One process serves five apps of a
// framework: saikuAuth's, the floor's, the floor's again (the control), and two
// that split saikuAuth's distance into parts (`buildPart`): the hashing floor (the
// floor plus one SHA-256 of the token and a constant-time digest compare), and
// saikuAuth's adapter around the floor's decision. saikuAuth minus the hashing floor,
// round by round, is what the core and adapter cost beyond keeping only digests. Each is called with
// a fresh request and response, in short batches whose order rotates round by
// round. The kernel, the load generator and the framework's socket handling, which
// the HTTP runs share on 2 cores, are out of the picture; and the apps share one
// heap, one compiler and the host's moods, so what differs between them is the
// middleware. The control's distance to the floor is zero but for the measure's own
// error: it says how finely the other distances can be read.
//
// Process CPU (`getrusage`) is read to the microsecond here. A thread's CPU alone is
// not: on this kernel it moves in 4 ms ticks, coarser than a batch.
//
// The loop turns after each batch, as a server's does between requests, and the
// scavenges the heap asks for run there, outside every batch: the CPU of a round's
// turns is shared out to its apps by the bytes each allocated (from the heap's growth
// over batches that no collection ran in), so an app that allocates more pays for the
// collections it brings on.
import { setImmediate as nextTurn } from 'node:timers/promises'
import { inWorker } from './worker.js'
import { build, buildPart, serveBatch, type BuiltApp } from './apps.js'
import { collectionsOwed } from './shares.js'
import { distanceOf, mean, median, type Distance } from './stats.js'
import { FLOORS, type Variant } from './variants.js'

export interface FloorDistance {
  readonly framework: string
  /** Processes, each serving the five apps, one after another. */
  readonly processes: number
  /** Rounds in all: one batch of each app per round. */
  readonly rounds: number
  /** Requests per batch (about `batchMs` of the floor's time). */
  readonly batch: number
  /** Mean CPU per request of each app, collections included. */
  readonly saikuCpuMicros: number
  readonly floorCpuMicros: number
  /** Bytes each app allocates per request. */
  readonly saikuBytes: number
  readonly floorBytes: number
  /** CPU between batches (mostly collections), µs per request of any app, before it was shared out. */
  readonly betweenBatchesCpuMicros: number
  /** saikuAuth minus the floor, round by round. */
  readonly aboveFloor: Distance
  /** The control minus the floor, round by round: zero but for the measure's error. */
  readonly control: Distance
  // The three below are absent from runs made before the hashing floor was measured.
  /** Whether saikuAuth above the hashing floor is a target of the run, or reported only. */
  readonly gated?: boolean
  /** The hashing floor (the floor, one SHA-256 of the token, a digest compare) minus the floor: the hash's share. */
  readonly hashingFloor?: Distance
  /** saikuAuth minus the hashing floor, round by round: what saikuAuth costs beyond keeping only digests of keys. */
  readonly aboveHashingFloor?: Distance
  /** saikuAuth's adapter around the floor's decision, minus the floor: the adapter's share. */
  readonly adapter: Distance
}

type Framework = (typeof FLOORS)[number]['framework']

type Role = 'saiku' | 'floor' | 'control' | 'hashing' | 'adapter'
const ROLES: readonly Role[] = ['saiku', 'floor', 'control', 'hashing', 'adapter']

interface WorkerOrder {
  readonly framework: Framework
  readonly saiku: Variant
  readonly floor: Variant
  readonly rounds: number
  readonly batchMs: number
  /** Requests through each app before the rounds: the compiler settles first. */
  readonly warmup: number
}

/** What one process measured: per role, CPU µs per request of each round's batch, its share of the turn after included. */
interface WorkerResult {
  readonly batch: number
  readonly samples: Record<Role, number[]>
  /** Per role, bytes allocated per request. */
  readonly bytes: Record<Role, number>
  /** CPU of the turns between batches, µs per request of any app. */
  readonly betweenBatchesCpuMicros: number
}

/** In the worker: builds the five apps, warms them up, then runs the rounds. */
async function runWorker(order: WorkerOrder): Promise<WorkerResult> {
  const apps: Record<Role, BuiltApp> = {
    saiku: await build(order.saiku),
    floor: await build(order.floor),
    control: await build(order.floor),
    hashing: await buildPart(order.framework, 'hashing'),
    adapter: await buildPart(order.framework, 'adapter'),
  }
  const batch = (role: Role, requests: number) => serveBatch(apps[role], requests, 'in-process bench')
  for (const role of ROLES) await batch(role, order.warmup)
  const requests = Math.max(
    10,
    Math.round((order.batchMs * 1000) / (await batch('floor', order.warmup >> 2)).cpuMicros),
  )
  const batches: Record<Role, number[]> = { saiku: [], floor: [], control: [], hashing: [], adapter: [] }
  // A batch that a collection ran in shrinks the heap; the others tell what a request allocates.
  const grown: Record<Role, number[]> = { saiku: [], floor: [], control: [], hashing: [], adapter: [] }
  const between: number[] = []
  for (let round = 0; round < order.rounds; round++) {
    // Each app takes each place in the order equally often, and every other cycle the order runs backwards,
    // so each follows both of its neighbours in the cycle.
    const rotated = ROLES.map((_, i) => ROLES[(i + round) % ROLES.length]!)
    let turnsMicros = 0
    for (const role of Math.floor(round / ROLES.length) % 2 === 0 ? rotated : rotated.reverse()) {
      const { cpuMicros, bytes } = await batch(role, requests)
      batches[role].push(cpuMicros)
      if (bytes > 0) grown[role].push(bytes)
      // A turn of the loop after each batch, as a server has between requests: the scavenges the heap asks for
      // run here rather than in the middle of the next batch.
      const before = process.cpuUsage()
      await nextTurn()
      const used = process.cpuUsage(before)
      turnsMicros += used.user + used.system
    }
    between.push(turnsMicros)
  }
  const bytes = Object.fromEntries(
    ROLES.map((role) => [role, grown[role].length === 0 ? 0 : median(grown[role])]),
  ) as Record<Role, number>
  const owed = collectionsOwed(
    1,
    ROLES.map((role) => ({ requests, bytesPerRequest: bytes[role] })),
  )
  const samples = Object.fromEntries(
    ROLES.map((role, i) => [role, batches[role].map((cpu, round) => cpu + between[round]! * owed[i]!)]),
  ) as Record<Role, number[]>
  return { batch: requests, samples, bytes, betweenBatchesCpuMicros: mean(between) / (ROLES.length * requests) }
}

/**
 * Each framework's saikuAuth against its floor: `rounds` rounds of batches of about
 * `batchMs`, spread over `processes` fresh processes one after another, so that no
 * one process's luck (where its heap and code landed) decides the figure.
 */
export async function measureInProcess(
  rounds: number,
  batchMs: number,
  processes = 3,
  warmup = 20_000,
): Promise<FloorDistance[]> {
  const distances: FloorDistance[] = []
  const roundsPerProcess = Math.max(3, Math.round(rounds / processes))
  for (const { framework, saiku, floor, gated } of FLOORS) {
    const results: WorkerResult[] = []
    for (let i = 0; i < processes; i++)
      results.push(
        await inWorker<WorkerResult>(
          import.meta.url,
          { framework, saiku, floor, rounds: roundsPerProcess, batchMs, warmup } satisfies WorkerOrder,
          'in-process bench',
        ),
      )
    const all = (role: Role) => results.flatMap((result) => result.samples[role])
    const [saikuCpu, floorCpu] = [all('saiku'), all('floor')]
    const above = (role: Role, base: readonly number[]) =>
      distanceOf(all(role).map((value, round) => value - base[round]!))
    const aboveFloor = (role: Role) => above(role, floorCpu)
    distances.push({
      framework,
      processes,
      rounds: floorCpu.length,
      batch: results[0]!.batch,
      saikuCpuMicros: mean(saikuCpu),
      floorCpuMicros: mean(floorCpu),
      saikuBytes: mean(results.map((result) => result.bytes.saiku)),
      floorBytes: mean(results.map((result) => result.bytes.floor)),
      betweenBatchesCpuMicros: mean(results.map((result) => result.betweenBatchesCpuMicros)),
      aboveFloor: aboveFloor('saiku'),
      control: aboveFloor('control'),
      gated,
      hashingFloor: aboveFloor('hashing'),
      aboveHashingFloor: above('saiku', all('hashing')),
      adapter: aboveFloor('adapter'),
    })
  }
  return distances
}

const fixed = (value: number): string => value.toFixed(2)

if (process.argv[2] === 'worker') {
  process.once('message', (order: WorkerOrder) => {
    void runWorker(order).then((result) => process.send!(result))
  })
} else if (import.meta.url === `file://${process.argv[1]}`) {
  // `node .build/inprocess.js [rounds] [batchMs] [processes]`: this measure alone.
  const distances = await measureInProcess(
    Number(process.argv[2] ?? 3000),
    Number(process.argv[3] ?? 3),
    Number(process.argv[4] ?? 3),
  )
  for (const d of distances) {
    console.log(
      `${d.framework}: saikuAuth ${fixed(d.saikuCpuMicros)}, the floor ${fixed(d.floorCpuMicros)} µs/req; ` +
        `above the floor ${fixed(d.aboveFloor.meanMicros)} ± ${fixed(d.aboveFloor.plusMinusMicros)} ` +
        `(median ${fixed(d.aboveFloor.medianMicros)}); control ${fixed(d.control.meanMicros)} ± ` +
        `${fixed(d.control.plusMinusMicros)} (median ${fixed(d.control.medianMicros)}); of which the hashing floor ` +
        `${fixed(d.hashingFloor!.meanMicros)} ± ${fixed(d.hashingFloor!.plusMinusMicros)}, the adapter ` +
        `${fixed(d.adapter.meanMicros)} ± ${fixed(d.adapter.plusMinusMicros)}; above the hashing floor ` +
        `${fixed(d.aboveHashingFloor!.meanMicros)} ± ${fixed(d.aboveHashingFloor!.plusMinusMicros)}; ` +
        `${d.processes} processes, ${d.rounds} rounds of ${d.batch}`,
    )
  }
}
