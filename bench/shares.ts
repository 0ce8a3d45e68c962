// A CPU profile's samples, given to the code that owns them: the core, the hash the
// core asks Node for, the adapter, the bench's own app, the framework, collections.
// Node's and V8's own code counts for the nearest caller that has an owner.
import { FLOORS, VARIANTS, type Variant } from './variants.js'

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
}

const CORE = /[/\\](?:packages[/\\]core|@saiku[/\\]core)[/\\]/
const ADAPTER = /[/\\](?:packages[/\\](?:express|koa)|@saiku[/\\](?:express|koa))[/\\]/
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

const fixedShare = (value: number): string => value.toFixed(2)

const OWNER_LABELS: Record<Owner, string> = {
  core: 'the core, but for the hash',
  'core: SHA-256': 'the core: one SHA-256 of the key',
  adapter: 'the adapter (with the headers and principal it writes)',
  'bench app': 'the bench app: the floor, the route, making the request',
  framework: 'the framework and its packages',
  collections: 'garbage collection',
  other: 'anything else',
}

function labelOf(variant: Variant): string {
  const pair = FLOORS.find(({ saiku, floor }) => variant === saiku || variant === floor)
  if (pair === undefined) return VARIANTS[variant].label
  return `${pair.framework} + ${variant === pair.saiku ? 'saikuAuth' : 'the floor'}`
}

/** The shares as a table, a column per variant. */
export function renderShares(profiles: readonly ProfileShares[]): string[] {
  if (profiles.length === 0) return []
  const { requests, processes } = profiles[0]!
  const lines = [
    `From CPU profiles: each app served alone without sockets, ${requests.toLocaleString('en-US')} requests in each of ` +
      `${processes} processes, sampled every 100 µs; each sample's time goes to the code that owns it (Node's own code ` +
      'to the code that called it). CPU µs per request, the mean of the processes; the profiler inflates every figure alike.',
    '',
    `| owner | ${profiles.map((profile) => labelOf(profile.variant)).join(' | ')} |`,
    `| --- |${' ---: |'.repeat(profiles.length)}`,
  ]
  for (const owner of OWNERS)
    lines.push(
      `| ${OWNER_LABELS[owner]} | ${profiles.map((profile) => fixedShare(profile.shares[owner])).join(' | ')} |`,
    )
  const totals = profiles.map((profile) =>
    fixedShare(Object.values(profile.shares).reduce((sum, share) => sum + share, 0)),
  )
  lines.push(`| **all** | ${totals.join(' | ')} |`)
  return lines
}

/** One variant's shares: the mean over its processes. */
export interface ProfileShares {
  readonly variant: Variant
  readonly processes: number
  /** Requests profiled in each process. */
  readonly requests: number
  /** CPU µs per request under the profiler, by owner. */
  readonly shares: Record<Owner, number>
}
