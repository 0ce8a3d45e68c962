import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { createFloor, createHashingFloor } from '../bench/floor.js'
import { checkTargets, renderMarkdown, type BenchResults } from '../bench/report.js'
import type { FloorDistance } from '../bench/inprocess.js'
import type { Distance } from '../bench/stats.js'

const KEY = 'sk_live_hashingfloorbenchkey00000000000000000000000000'

describe('the hashing floor', () => {
  it('admits the key with the floor’s fields, and counts each request', () => {
    const floor = createFloor(KEY)
    const hashing = createHashingFloor(KEY)
    const [a, b] = [floor(`Bearer ${KEY}`), hashing(`bearer ${KEY}`)]
    if (typeof a === 'number' || typeof b === 'number') throw new Error(`refused: ${JSON.stringify([a, b])}`)
    expect(b.tenant).toEqual(a.tenant)
    expect(b.policy).toBe(a.policy)
    expect(b.rateLimit).toBe(a.rateLimit)
    const again = hashing(`Bearer ${KEY}`)
    if (typeof again === 'number') throw new Error(`refused: ${again}`)
    // One request fewer left in each window.
    expect(again.rateLimit).toMatch(/^"minute";r=999999998;t=\d+, "hour";r=999999998;t=\d+$/)
  })

  it('refuses no token, another scheme, an unknown key and the key’s digest presented as the token', () => {
    const hashing = createHashingFloor(KEY)
    const digestHex = createHash('sha256').update(KEY).digest('hex')
    const digestLatin1 = createHash('sha256').update(KEY).digest().toString('latin1')
    for (const authorization of [
      undefined,
      '',
      'Bearer ',
      `Basic ${KEY}`,
      `Bearer ${KEY}x`,
      `Bearer ${digestHex}`,
      `Bearer ${digestLatin1}`,
    ])
      expect(hashing(authorization), String(authorization)).toBe(401)
  })
})

const distance = (meanMicros: number, plusMinusMicros: number): Distance => ({
  meanMicros,
  plusMinusMicros,
  medianMicros: meanMicros,
})

const inProcess = (framework: string, gated: boolean, above: Distance): FloorDistance => ({
  framework,
  processes: 3,
  rounds: 3000,
  batch: 100,
  saikuCpuMicros: 10,
  floorCpuMicros: 7,
  saikuBytes: 1000,
  floorBytes: 900,
  betweenBatchesCpuMicros: 0.5,
  gated,
  aboveFloor: distance(3, 0.1),
  control: distance(0, 0.1),
  hashingFloor: distance(1.5, 0.1),
  aboveHashingFloor: above,
  adapter: distance(0.2, 0.1),
})

const results = (floors: FloorDistance[]): BenchResults => ({
  date: '2026-12-05T00:00:00.000Z',
  quick: false,
  machine: { cores: 2, model: 'test', node: 'v22' },
  settings: { rounds: 7, durationSeconds: 4, connections: 32, fixedRate: 2000 },
  summaries: {},
  expressVersusPopularStack: NaN,
  inProcessFloors: floors,
  rounds: [],
  decisions: [],
  redis: null,
  flood: { count: 1, heapGrowthMb: 0, cap: 1, limiterTenants: 1, stats: { cachedKeys: 0, countedClients: 0 } },
})

const verdict = (run: BenchResults, framework: string) =>
  checkTargets(run).find((check) => check.name.startsWith(`${framework} + saikuAuth: CPU above the hashing floor`))

describe('the target above the hashing floor', () => {
  it('is met only when the 95 % interval’s upper end is under 2 µs', () => {
    const run = results([
      inProcess('Fastify', true, distance(1.5, 0.4)),
      inProcess('Hono', true, distance(1.5, 0.6)),
      inProcess('Express', false, distance(3.1, 0.2)),
    ])
    expect(verdict(run, 'Fastify')).toMatchObject({ met: true, gated: true, measured: '1.50 ± 0.40 µs (upper 1.90)' })
    // A mean under the target is not enough: the interval reaches past it.
    expect(verdict(run, 'Hono')).toMatchObject({ met: false, gated: true, measured: '1.50 ± 0.60 µs (upper 2.10)' })
    expect(verdict(run, 'Express')).toMatchObject({ met: false, gated: false })
  })

  it('is a verdict line for the gated frameworks, and reported the same way for the others', () => {
    const markdown = renderMarkdown(
      results([inProcess('Fastify', true, distance(2.5, 0.1)), inProcess('Koa', false, distance(0.5, 0.1))]),
    )
    expect(markdown).toContain(
      '| Fastify + saikuAuth: CPU above the hashing floor < 2 µs per request (upper end of the 95 % interval), without sockets | 2.50 ± 0.10 µs (upper 2.60) | no |',
    )
    expect(markdown).toContain(
      '| Koa + saikuAuth: CPU above the hashing floor < 2 µs per request (upper end of the 95 % interval), without sockets | 0.50 ± 0.10 µs (upper 0.60) | yes (reported, not gated) |',
    )
    // The in-process table shows both floors' distances.
    expect(markdown).toContain('| saikuAuth above the hashing floor |')
  })

  it('renders a run made before the hashing floor was measured, with no verdict for it', () => {
    const published = JSON.parse(
      readFileSync(new URL('../docs/benchmarks/results.json', import.meta.url), 'utf8'),
    ) as BenchResults
    // The published run's in-process rows, as a run before the hashing floor wrote them.
    const older: BenchResults = {
      ...published,
      inProcessFloors: [inProcess('Koa', false, distance(1, 0.1))].map(
        ({ gated: _gated, hashingFloor: _hashing, aboveHashingFloor: _above, ...rest }) => rest,
      ),
    }
    const markdown = renderMarkdown(older)
    expect(markdown).toContain('| target | measured | met |')
    expect(markdown).toMatch(/\| Koa \| 10\.0 \| 7\.0 \| 3\.00 ± 0\.10 \| 3\.00 \| – \| – \|/)
    expect(checkTargets(older).some((check) => check.name.includes('hashing floor'))).toBe(false)
  })
})

describe('the target of day and month quotas', () => {
  const withQuotas = (mean: number, plusMinus: number): BenchResults => ({
    ...results([]),
    quotas: {
      rounds: 1_000,
      callsPerBatch: 2_000,
      limiterMicros: 0.06,
      limiterDifference: distance(mean, plusMinus),
      authenticatorMicros: 1.1,
      authenticatorDifference: distance(0.2, 0.1),
    },
  })
  const quotaVerdict = (run: BenchResults) => checkTargets(run).find((check) => check.name.startsWith('day and month'))

  it('is met only when the upper end of the memory limiter’s 95 % interval is at most 0.5 µs', () => {
    expect(quotaVerdict(withQuotas(0.03, 0.02))).toMatchObject({ met: true, gated: true, measured: '0.050 µs' })
    expect(quotaVerdict(withQuotas(0.4, 0.2))).toMatchObject({ met: false, measured: '0.600 µs' })
    expect(renderMarkdown(withQuotas(0.03, 0.02))).toContain(
      'memory limiter, consumeSync: 0.060 µs without; +0.030 ± 0.020 µs with day and month (95 % interval up to 0.050 µs',
    )
  })

  it('has no verdict in a run made before quotas', () => {
    expect(quotaVerdict(results([]))).toBeUndefined()
  })
})
