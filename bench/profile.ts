// Where saikuAuth's distance to the floor goes, from CPU profiles: both apps of a
// framework served in one process without sockets (as the in-process measure serves
// them), in alternating batches under one profiler, so that both see the same host,
// heap and compiler. Each sample goes to the app whose batch was running and to the
// code that owns it. The in-process measure reads the distance as a difference of two
// noisy totals; this reads its parts, at the price of the profiler's own overhead
// (every figure is inflated alike).
//
// The loop turns after each batch, and most collections run there, where neither
// app's requests are served: they are shared out by the bytes each app allocated,
// measured from the heap's growth over batches that no collection ran in.
//
// `node .build/profile.js [requests] [framework ...]`: by default both frameworks,
// each in processes of its own.
import { Session } from 'node:inspector/promises'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { inWorker } from './worker.js'
import { build, serveBatch } from './apps.js'
import { collectionsOwed, OWNERS, renderFloorProfiles, sharesOf, splitByBatch, type Batch } from './shares.js'
import type { FloorProfile, Owner } from './shares.js'
import { median } from './stats.js'
import { FLOORS } from './variants.js'

type Pair = (typeof FLOORS)[number]

interface ProfileOrder {
  readonly pair: Pair
  /** Requests of each app under the profiler. */
  readonly requests: number
  readonly warmup: number
  /** About how long a batch of the floor runs. */
  readonly batchMs: number
}

/** What one process measured: a profile but for the framework's name and the count of processes. */
type PairRun = Omit<FloorProfile, 'framework' | 'processes'>

const SAIKU = 0
const FLOOR = 1

const nowMicros = (): number => Number(process.hrtime.bigint() / 1000n)

/** In a process of its own: both apps, warmed up, then alternating batches under the profiler. */
async function profilePair({ pair, requests, warmup, batchMs }: ProfileOrder): Promise<PairRun> {
  const apps = [await build(pair.saiku), await build(pair.floor)]
  const serve = (app: number, requests: number) => serveBatch(apps[app]!, requests, `profile of ${pair.framework}`)
  for (let app = 0; app < apps.length; app++) await serve(app, warmup)
  const batch = Math.max(10, Math.round((batchMs * 1000) / (await serve(FLOOR, Math.max(100, warmup >> 2))).cpuMicros))
  const rounds = Math.max(1, Math.round(requests / batch))

  const batches: Batch[] = []
  // A batch that a collection ran in shrinks the heap; the others tell what a request allocates.
  const grown: [number[], number[]] = [[], []]
  const session = new Session()
  session.connect()
  await session.post('Profiler.enable')
  await session.post('Profiler.setSamplingInterval', { interval: 100 })
  await session.post('Profiler.start')
  for (let round = 0; round < rounds; round++) {
    for (const app of round % 2 === 0 ? [SAIKU, FLOOR] : [FLOOR, SAIKU]) {
      const startMicros = nowMicros()
      const { bytes } = await serve(app, batch)
      batches.push({ startMicros, endMicros: nowMicros(), app })
      if (bytes > 0) grown[app]!.push(bytes)
      // A turn of the loop, as a server has between requests: the scavenges the heap asks for run here.
      await nextTurn()
    }
  }
  const { profile } = await session.post('Profiler.stop')
  session.disconnect()
  for (const app of apps) app.close?.()

  const served = rounds * batch
  const split = splitByBatch(profile, batches, 2)
  const [saiku, floor] = split.apps.map((part) => sharesOf(part, served)) as [
    Record<Owner, number>,
    Record<Owner, number>,
  ]
  const betweenMicros = sharesOf(split.between, 1).collections
  const [saikuBytes, floorBytes] = grown.map((bytes) => (bytes.length === 0 ? 0 : median(bytes))) as [number, number]
  const [saikuOwes, floorOwes] = collectionsOwed(betweenMicros, [
    { requests: served, bytesPerRequest: saikuBytes },
    { requests: served, bytesPerRequest: floorBytes },
  ]) as [number, number]
  return {
    batch,
    requests: served,
    saiku: { ...saiku, collections: saiku.collections + saikuOwes },
    floor: { ...floor, collections: floor.collections + floorOwes },
    saikuBytes,
    floorBytes,
    collectionsBetweenMicros: betweenMicros / (2 * served),
  }
}

const meanOf = (runs: readonly PairRun[], value: (run: PairRun) => number): number =>
  runs.reduce((sum, run) => sum + value(run), 0) / runs.length

const meanShares = (runs: readonly PairRun[], app: 'saiku' | 'floor'): Record<Owner, number> =>
  Object.fromEntries(OWNERS.map((owner) => [owner, meanOf(runs, (run) => run[app][owner])])) as Record<Owner, number>

/**
 * Each framework's saikuAuth and floor, profiled together in `processes` fresh
 * processes, so that no one process's luck (where its heap and code landed) decides a share.
 */
export async function measureFloorProfiles(
  requests: number,
  processes = 3,
  warmup = 20_000,
  batchMs = 5,
  pairs: readonly Pair[] = FLOORS,
): Promise<FloorProfile[]> {
  const profiles: FloorProfile[] = []
  for (const pair of pairs) {
    const runs: PairRun[] = []
    for (let i = 0; i < processes; i++)
      runs.push(
        await inWorker<PairRun>(
          import.meta.url,
          { pair, requests, warmup, batchMs } satisfies ProfileOrder,
          `profile of ${pair.framework}`,
        ),
      )
    profiles.push({
      framework: pair.framework,
      processes,
      requests: runs[0]!.requests,
      batch: runs[0]!.batch,
      saiku: meanShares(runs, 'saiku'),
      floor: meanShares(runs, 'floor'),
      saikuBytes: meanOf(runs, (run) => run.saikuBytes),
      floorBytes: meanOf(runs, (run) => run.floorBytes),
      collectionsBetweenMicros: meanOf(runs, (run) => run.collectionsBetweenMicros),
    })
  }
  return profiles
}

if (process.argv[2] === 'worker') {
  process.once('message', (order: ProfileOrder) => {
    void profilePair(order).then((run) => process.send!(run))
  })
} else if (import.meta.url === `file://${process.argv[1]}`) {
  const [first, ...rest] = process.argv.slice(2)
  const counted = first !== undefined && /^\d+$/.test(first)
  const named = counted ? rest : process.argv.slice(2)
  const pairs = named.map((name) => {
    const pair = FLOORS.find(({ framework }) => framework.toLowerCase() === name.toLowerCase())
    if (pair === undefined)
      throw new Error(`profile: no framework "${name}" (${FLOORS.map((p) => p.framework).join(', ')})`)
    return pair
  })
  const profiles = await measureFloorProfiles(
    counted ? Number(first) : 50_000,
    3,
    20_000,
    5,
    pairs.length > 0 ? pairs : FLOORS,
  )
  process.stdout.write(`${renderFloorProfiles(profiles).join('\n')}\n`)
}
