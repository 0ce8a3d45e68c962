// Where a request's CPU goes, from a CPU profile: one app served without sockets (as
// the in-process measure serves it), sampled every 100 µs, each sample's time given
// to the code that owns it. The in-process measure reads saikuAuth's distance to the
// floor as a difference of two noisy totals; this reads the parts directly, by owner,
// at the price of the profiler's own overhead (every figure is inflated alike).
//
// `node .build/profile.js [requests] [variant ...]`: by default saikuAuth on each
// framework, each in processes of its own.
import { Session } from 'node:inspector/promises'
import { inWorker } from './worker.js'
import { build, serveInProcess } from './apps.js'
import { OWNERS, renderShares, sharesOf, type Owner, type ProfileShares } from './shares.js'
import { FLOORS, VARIANTS, type Variant } from './variants.js'

interface ProfileOrder {
  readonly variant: Variant
  readonly requests: number
  readonly warmup: number
}

/** In a process of its own: the variant's app, warmed up, then `requests` requests under the profiler. */
async function profileVariant({ variant, requests, warmup }: ProfileOrder): Promise<Record<Owner, number>> {
  const app = await build(variant)
  for (let i = 0; i < warmup; i++) await serveInProcess(app)
  const session = new Session()
  session.connect()
  await session.post('Profiler.enable')
  await session.post('Profiler.setSamplingInterval', { interval: 100 })
  await session.post('Profiler.start')
  for (let i = 0; i < requests; i++) {
    const status = await serveInProcess(app)
    if (status !== 200) throw new Error(`profile: ${variant} answered ${status}, not 200`)
  }
  const { profile } = await session.post('Profiler.stop')
  session.disconnect()
  app.close?.()
  return sharesOf(profile, requests)
}

/**
 * Each variant profiled in `processes` fresh processes, one variant after another in
 * an order that turns pass by pass, so that no one process's luck decides a share.
 */
export async function measureShares(
  variants: readonly Variant[],
  requests: number,
  processes = 3,
  warmup = 20_000,
): Promise<ProfileShares[]> {
  const runs = new Map<Variant, Record<Owner, number>[]>(variants.map((variant) => [variant, []]))
  for (let pass = 0; pass < processes; pass++) {
    const order = variants.map((_, i) => variants[(i + pass) % variants.length]!)
    for (const variant of order)
      runs
        .get(variant)!
        .push(
          await inWorker<Record<Owner, number>>(
            import.meta.url,
            { variant, requests, warmup } satisfies ProfileOrder,
            `profile of ${variant}`,
          ),
        )
  }
  return variants.map((variant) => {
    const measured = runs.get(variant)!
    const shares = Object.fromEntries(
      OWNERS.map((owner) => [owner, measured.reduce((sum, run) => sum + run[owner], 0) / measured.length]),
    ) as Record<Owner, number>
    return { variant, processes, requests, shares }
  })
}

/** saikuAuth on each framework: the variants the bench profiles. */
export const PROFILED: readonly Variant[] = FLOORS.map(({ saiku }) => saiku)

if (process.argv[2] === 'worker') {
  process.once('message', (order: ProfileOrder) => {
    void profileVariant(order).then((shares) => process.send!(shares))
  })
} else if (import.meta.url === `file://${process.argv[1]}`) {
  const [first, ...rest] = process.argv.slice(2)
  const counted = first !== undefined && /^\d+$/.test(first)
  const named = counted ? rest : process.argv.slice(2)
  for (const variant of named) if (!(variant in VARIANTS)) throw new Error(`profile: no variant "${variant}"`)
  const profiles = await measureShares(
    named.length > 0 ? (named as Variant[]) : PROFILED,
    counted ? Number(first) : 50_000,
  )
  process.stdout.write(`${renderShares(profiles).join('\n')}\n`)
}
