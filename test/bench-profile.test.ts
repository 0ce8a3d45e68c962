import { describe, expect, it } from 'vitest'
import {
  collectionsOwed,
  renderFloorProfiles,
  sharesOf,
  splitByBatch,
  type CpuProfile,
  type Owner,
} from '../bench/shares.js'

// A request's stack as the profiler sees it: Express calls the adapter, which calls the
// core, which hashes through Node's crypto; the adapter also writes a header through
// Node's http; Node's http also runs under the bench's own request maker.
const frame = (id: number, functionName: string, url: string, children: number[] = []) => ({
  id,
  callFrame: { functionName, url },
  children,
})
const profile: CpuProfile = {
  nodes: [
    frame(1, '(root)', '', [2, 9, 10, 11]),
    frame(2, 'handle', '/app/node_modules/.pnpm/express@5/node_modules/express/lib/application.js', [3, 8]),
    frame(3, 'middleware', '/app/node_modules/@saiku/express/dist/index.mjs', [4, 7]),
    frame(4, 'check', '/repo/packages/core/dist/authenticator.mjs', [5, 6]),
    frame(5, 'hash', 'node:internal/crypto/hash'),
    frame(6, 'get', ''),
    frame(7, 'setHeader', 'node:_http_outgoing'),
    frame(8, 'end', 'node:_http_outgoing'),
    frame(9, '(garbage collector)', ''),
    frame(10, '(program)', ''),
    frame(11, 'serveInProcess', '/repo/bench/.build/apps.js', [12]),
    frame(12, 'ServerResponse', 'node:_http_server'),
  ],
  samples: [5, 5, 6, 4, 7, 8, 2, 9, 10, 12, 11],
  timeDeltas: [10, 10, 10, 10, 10, 10, 10, 30, 10, 10, 10],
}

describe('the profile’s shares', () => {
  it('gives each sample to the code that owns it, Node’s own code to its nearest owning caller', () => {
    expect(sharesOf(profile, 10)).toEqual({
      // check itself, and a builtin it called
      core: 2,
      // Node's hashing, asked for by the core
      'core: SHA-256': 2,
      // the header written through Node's http
      adapter: 1,
      // Express, and Node's http under it
      framework: 2,
      'bench app': 2,
      collections: 3,
      other: 1,
    })
  })

  it('counts each adapter’s code as the adapter’s, from the workspace or installed', () => {
    const adapters: CpuProfile = {
      nodes: [
        frame(1, '(root)', '', [2, 3, 4]),
        frame(2, 'hook', '/repo/packages/fastify/dist/index.mjs'),
        frame(3, 'hook', '/app/node_modules/@saiku/fastify/dist/index.mjs'),
        frame(4, 'middleware', '/repo/packages/koa/dist/index.mjs'),
      ],
      samples: [2, 3, 4],
      timeDeltas: [10, 10, 10],
    }
    expect(sharesOf(adapters, 1)).toMatchObject({ adapter: 30, framework: 0, other: 0 })
  })

  it('counts hashing under anything but the core as its caller’s', () => {
    const underExpress: CpuProfile = {
      nodes: [
        frame(1, '(root)', '', [2]),
        frame(2, 'etag', '/app/node_modules/etag/index.js', [3]),
        frame(3, 'digest', 'node:internal/crypto/hash'),
      ],
      samples: [3],
      timeDeltas: [50],
    }
    expect(sharesOf(underExpress, 1)).toMatchObject({ framework: 50, 'core: SHA-256': 0, core: 0 })
  })
})

describe('the samples of each batch', () => {
  // Samples at 110, 120, … 210 µs (the profile starts at 100, one sample every 10 µs).
  const timed: CpuProfile = {
    ...profile,
    startTime: 100,
    samples: [5, 5, 6, 4, 7, 8, 2, 9, 10, 12],
    timeDeltas: Array.from({ length: 10 }, () => 10),
  }

  it('go to the app whose batch was running; what ran between batches stays apart', () => {
    const { apps, between } = splitByBatch(
      timed,
      [
        { startMicros: 105, endMicros: 135, app: 0 },
        { startMicros: 140, endMicros: 160, app: 1 },
        { startMicros: 175, endMicros: 195, app: 0 },
      ],
      2,
    )
    expect(apps[0]!.samples).toEqual([5, 5, 6, 9, 10])
    expect(apps[1]!.samples).toEqual([4, 7, 8])
    expect(between.samples).toEqual([2, 12])
    // Each part keeps its samples' intervals and the profile's nodes, for sharesOf.
    expect(apps[0]!.timeDeltas).toEqual([10, 10, 10, 10, 10])
    expect(sharesOf(between, 1)).toMatchObject({ framework: 10, 'bench app': 10 })
    expect(sharesOf(apps[1]!, 1)).toMatchObject({ core: 10, adapter: 10, framework: 10 })
  })

  it('all go between when no batch ran', () => {
    const { apps, between } = splitByBatch(timed, [], 1)
    expect(apps[0]!.samples).toEqual([])
    expect(between.samples).toEqual(timed.samples)
  })
})

describe('the collections between batches', () => {
  it('are owed by the bytes each app allocated, per request of that app', () => {
    // 1,000 µs between batches; app 0 allocated 3 × 100 × 2,000 B, app 1 100 × 4,000 B: 60 % and 40 %.
    const owed = collectionsOwed(1_000, [
      { requests: 300, bytesPerRequest: 2_000 },
      { requests: 100, bytesPerRequest: 4_000 },
    ])
    expect(owed).toEqual([2, 4])
  })

  it('are owed by nobody when nothing was allocated', () => {
    expect(collectionsOwed(500, [{ requests: 10, bytesPerRequest: 0 }])).toEqual([0])
  })
})

describe('the profile table', () => {
  const shares = (framework: number, core: number): Record<Owner, number> => ({
    core,
    'core: SHA-256': core / 2,
    adapter: core / 4,
    'bench app': 2,
    framework,
    collections: 0.25,
    other: 0,
  })

  it('has saikuAuth, the floor and their difference per framework, a row per owner, totals and bytes', () => {
    const lines = renderFloorProfiles([
      {
        framework: 'Express',
        processes: 3,
        requests: 50_000,
        batch: 60,
        saiku: shares(6, 1),
        floor: shares(6, 0),
        saikuBytes: 25_400,
        floorBytes: 24_600,
        collectionsBetweenMicros: 6,
      },
      {
        framework: 'Koa',
        processes: 3,
        requests: 50_000,
        batch: 380,
        saiku: shares(1, 1),
        floor: { ...shares(1, 0), 'bench app': 3 },
        saikuBytes: 10_000,
        floorBytes: 9_250,
        collectionsBetweenMicros: 0.5,
      },
    ])
    expect(lines[0]).toContain('(Express 60, Koa 380 requests), 50,000 requests of each in each of 3 processes')
    expect(lines).toContain(
      '| owner | Express: saikuAuth | the floor | difference | Koa: saikuAuth | the floor | difference |',
    )
    expect(lines).toContain('| the core: one SHA-256 of the key | 0.50 | 0.00 | 0.50 | 0.50 | 0.00 | 0.50 |')
    expect(lines).toContain(
      '| the bench app: the floor, the route, making the request | 2.00 | 2.00 | 0.00 | 2.00 | 3.00 | -1.00 |',
    )
    expect(lines).toContain('| **all** | 10.00 | 8.25 | 1.75 | 5.00 | 4.25 | 0.75 |')
    expect(lines.at(-1)).toBe('| bytes allocated per request | 25,400 | 24,600 | 800 | 10,000 | 9,250 | 750 |')
    expect(lines).toHaveLength(4 + 7 + 2)
  })

  it('is empty without profiles', () => {
    expect(renderFloorProfiles([])).toEqual([])
  })
})
