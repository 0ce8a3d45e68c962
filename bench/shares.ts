// A CPU profile's samples, given to the app whose batch was running and to the code
// that owns them: the core, the hash the core asks Node for, the adapter, the bench's
// own app, the framework, collections. Node's and V8's own code counts for the
// nearest caller that has an owner.

/** Who a sample's time belongs to. */
export type Owner = 'core' | 'core: SHA-256' | 'adapter' | 'bench app' | 'framework' | 'collections' | 'other'
export const OWNERS: readonly Owner[] = [
  'core',
  'core: SHA-256',
  'adapter',
  'bench app',
  'framework',
  'collections',
  'other',
]

/** The parts of a V8 CPU profile read here. */
export interface CpuProfile {
  readonly nodes: readonly {
    readonly id: number
    readonly callFrame: { readonly functionName: string; readonly url: string }
    readonly children?: readonly number[] | undefined
  }[]
  /** Absent when nothing was sampled. */
  readonly samples?: readonly number[] | undefined
  readonly timeDeltas?: readonly number[] | undefined
  /** When the profile started, µs on the monotonic clock (`process.hrtime` / 1000). */
  readonly startTime?: number | undefined
}

const CORE = /[/\\](?:packages[/\\]core|@saiku[/\\]core)[/\\]/
const ADAPTER = /[/\\](?:packages[/\\](?:express|koa|fastify|fetch)|@saiku[/\\](?:express|koa|fastify|fetch))[/\\]/
const BENCH = /[/\\]bench[/\\]\.build[/\\]/
const CRYPTO = /^node:internal\/crypto\//

/** The owner of a frame's code; null for Node's and V8's own code, which belongs to its caller. */
function ownerOfFrame(url: string): Exclude<Owner, 'core: SHA-256'> | null {
  if (CORE.test(url)) return 'core'
  if (ADAPTER.test(url)) return 'adapter'
  if (BENCH.test(url)) return 'bench app'
  if (/[/\\]node_modules[/\\]/.test(url)) return 'framework'
  return null
}

/** µs per request of each owner: a sample in Node's code counts for the nearest caller that has an owner. */
export function sharesOf(profile: CpuProfile, requests: number): Record<Owner, number> {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const parentOf = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id)
  const ownerById = new Map<number, Owner>()
  const ownerOf = (id: number): Owner => {
    const known = ownerById.get(id)
    if (known !== undefined) return known
    const { functionName, url } = byId.get(id)!.callFrame
    let owner: Owner
    if (functionName === '(garbage collector)') owner = 'collections'
    else {
      const own = ownerOfFrame(url)
      const parent = parentOf.get(id)
      if (own !== null) owner = own
      else if (parent === undefined) owner = 'other'
      else {
        const caller = ownerOf(parent)
        // Hashing is the one thing of Node's the core asks for on every request: told apart.
        owner = caller === 'core' && CRYPTO.test(url) ? 'core: SHA-256' : caller
      }
    }
    ownerById.set(id, owner)
    return owner
  }
  const shares = Object.fromEntries(OWNERS.map((owner) => [owner, 0])) as Record<Owner, number>
  const { samples = [], timeDeltas = [] } = profile
  samples.forEach((id, i) => (shares[ownerOf(id)] += timeDeltas[i]! / requests))
  return shares
}

/** A batch of one app's requests: when it ran, µs on the monotonic clock the profile's times are on. */
export interface Batch {
  readonly startMicros: number
  readonly endMicros: number
  /** Index of the app that served it. */
  readonly app: number
}

/**
 * The profile's samples, split by the batch each was taken in (`batches` in the order
 * they ran, none overlapping); what was sampled between batches is `between`.
 */
export function splitByBatch(
  profile: CpuProfile,
  batches: readonly Batch[],
  apps: number,
): { readonly apps: CpuProfile[]; readonly between: CpuProfile } {
  const parts = Array.from({ length: apps + 1 }, () => ({ samples: [] as number[], timeDeltas: [] as number[] }))
  const { samples = [], timeDeltas = [] } = profile
  let at = profile.startTime ?? 0
  let next = 0
  samples.forEach((id, i) => {
    const delta = timeDeltas[i]!
    at += delta
    while (next < batches.length && batches[next]!.endMicros < at) next++
    const batch = batches[next]
    const part = parts[batch !== undefined && batch.startMicros <= at ? batch.app : apps]!
    part.samples.push(id)
    part.timeDeltas.push(delta)
  })
  const withNodes = (part: (typeof parts)[number]): CpuProfile => ({ nodes: profile.nodes, ...part })
  return { apps: parts.slice(0, apps).map(withNodes), between: withNodes(parts[apps]!) }
}

/**
 * The collector's time between batches (`betweenMicros`, in all), shared out by the bytes
 * each app allocated: what each app's requests owe, µs per request of that app.
 */
export function collectionsOwed(
  betweenMicros: number,
  apps: readonly { readonly requests: number; readonly bytesPerRequest: number }[],
): number[] {
  const allocated = apps.reduce((sum, app) => sum + app.requests * app.bytesPerRequest, 0)
  return apps.map((app) => (allocated > 0 ? (betweenMicros * app.bytesPerRequest) / allocated : 0))
}

/** saikuAuth and its floor, profiled in one process: CPU µs per request of each by owner. */
export interface FloorProfile {
  readonly framework: string
  readonly processes: number
  /** Requests of each app profiled in each process. */
  readonly requests: number
  /** Requests per batch; the two apps' batches alternate. */
  readonly batch: number
  /** By owner, under the profiler; `collections` holds the app's share of the collections between batches. */
  readonly saiku: Record<Owner, number>
  readonly floor: Record<Owner, number>
  /** Bytes allocated per request: the median over batches that no collection ran in. */
  readonly saikuBytes: number
  readonly floorBytes: number
  /** The collector's time between batches, µs per request of either app, before it was shared out. */
  readonly collectionsBetweenMicros: number
}

const fixedShare = (value: number): string => value.toFixed(2)
const total = (shares: Record<Owner, number>): number => OWNERS.reduce((sum, owner) => sum + shares[owner], 0)

const OWNER_LABELS: Record<Owner, string> = {
  core: 'the core, but for the hash',
  'core: SHA-256': 'the core: one SHA-256 of the key',
  adapter: 'the adapter (with the fields and principal it writes)',
  'bench app': 'the bench app: the floor, the route, making the request',
  framework: 'the framework and its packages',
  collections: 'garbage collection (between batches: by bytes allocated)',
  other: 'anything else',
}

/** The profiles as one table: per framework, saikuAuth, the floor and the difference. */
export function renderFloorProfiles(profiles: readonly FloorProfile[]): string[] {
  if (profiles.length === 0) return []
  const { requests, processes } = profiles[0]!
  const lines = [
    `From CPU profiles: saikuAuth and its floor served in one process without sockets, in alternating batches ` +
      `(${profiles.map((profile) => `${profile.framework} ${profile.batch}`).join(', ')} requests), ` +
      `${requests.toLocaleString('en-US')} requests of each in each of ${processes} processes, sampled every 100 µs. ` +
      'Each sample goes to the app whose batch was running and to the code that owns it (Node’s own code to the ' +
      'code that called it); the collections that ran between batches are shared out by the bytes each app ' +
      'allocated. CPU µs per request, the mean of the processes; the profiler inflates every figure alike.',
    '',
    `| owner | ${profiles.map(({ framework }) => `${framework}: saikuAuth | the floor | difference`).join(' | ')} |`,
    `| --- |${' ---: |'.repeat(3 * profiles.length)}`,
  ]
  const row = (label: string, values: (profile: FloorProfile) => [number, number], digits = fixedShare) =>
    `| ${label} | ${profiles
      .map((profile) => {
        const [saiku, floor] = values(profile)
        return `${digits(saiku)} | ${digits(floor)} | ${digits(saiku - floor)}`
      })
      .join(' | ')} |`
  for (const owner of OWNERS) lines.push(row(OWNER_LABELS[owner], ({ saiku, floor }) => [saiku[owner], floor[owner]]))
  lines.push(
    row('**all**', ({ saiku, floor }) => [total(saiku), total(floor)]),
    row(
      'bytes allocated per request',
      ({ saikuBytes, floorBytes }) => [saikuBytes, floorBytes],
      (bytes) => Math.round(bytes).toLocaleString('en-US'),
    ),
  )
  return lines
}
