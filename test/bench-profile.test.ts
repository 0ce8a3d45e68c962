import { describe, expect, it } from 'vitest'
import { renderShares, sharesOf, type CpuProfile } from '../bench/shares.js'

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

describe('the profile table', () => {
  it('has a column per variant and a row per owner, with the total of each column', () => {
    const shares = {
      core: 1,
      'core: SHA-256': 0.5,
      adapter: 0.25,
      'bench app': 2,
      framework: 6,
      collections: 0.25,
      other: 0,
    }
    const lines = renderShares([
      { variant: 'express+saiku', processes: 3, requests: 50_000, shares },
      { variant: 'koa+saiku', processes: 3, requests: 50_000, shares: { ...shares, framework: 1 } },
    ])
    expect(lines[0]).toContain('50,000 requests in each of 3 processes')
    expect(lines).toContain('| owner | Express + saikuAuth | Koa + saikuAuth |')
    expect(lines).toContain('| the core: one SHA-256 of the key | 0.50 | 0.50 |')
    expect(lines.at(-1)).toBe('| **all** | 10.00 | 5.00 |')
    expect(lines).toHaveLength(4 + 7 + 1)
  })
})
