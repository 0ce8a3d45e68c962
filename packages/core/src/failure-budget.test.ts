import { describe, expect, it } from 'vitest'
import { FailureBudget } from './failure-budget.js'

function budget(perMinute: number, options: { trustVerifiedMs?: number; maxClients?: number } = {}) {
  let now = 1_000_000
  const b = new FailureBudget({
    perMinute,
    perHour: perMinute * 10,
    maxClients: options.maxClients ?? 100,
    trustVerifiedMs: options.trustVerifiedMs ?? 3_600_000,
    maxTrustedKeys: 100,
    now: () => now,
  })
  return { b, advance: (ms: number) => (now += ms), at: () => now }
}

describe('FailureBudget', () => {
  it('counts failures per client and answers the wait once the minute is spent, writing nothing when refused', () => {
    const { b, advance } = budget(2)
    expect(b.fail('a')).toBe(0)
    expect(b.fail('a')).toBe(0)
    expect(b.fail('a')).toBe(60_000)
    expect(b.fail('b')).toBe(0)
    advance(59_999)
    expect(b.fail('a')).toBe(1)
    advance(1)
    expect(b.fail('a')).toBe(0)
  })

  it('gives a reservation back into the windows it was spent in only', () => {
    const { b, advance } = budget(2)
    const spent = b.reserve('a', 'key000000001')
    expect(typeof spent).toBe('object')
    b.refund(spent as Exclude<typeof spent, number | null>)
    expect(b.fail('a')).toBe(0)
    const late = b.reserve('a', 'key000000002')
    advance(60_000)
    expect(b.fail('a')).toBe(0)
    expect(b.fail('a')).toBe(0)
    b.refund(late as Exclude<typeof late, number | null>)
    expect(b.fail('a')).toBeGreaterThan(0)
  })

  it('spends nothing in advance for a lookup already in flight or a key ID verified recently, and forgets that trust in time', () => {
    const { b, advance, at } = budget(1, { trustVerifiedMs: 10_000 })
    const done = b.lookupStarted('key000000001')
    expect(b.reserve('a', 'key000000001')).toBeNull()
    done()
    expect(typeof b.reserve('a', 'key000000001')).toBe('object')
    expect(b.reserve('a', 'key000000002')).toBeGreaterThan(0)
    b.verified('key000000002', at())
    expect(b.reserve('a', 'key000000002')).toBeNull()
    advance(10_000)
    expect(b.reserve('a', 'key000000002')).toBeGreaterThan(0)
  })

  it('counts at most maxClients clients, forgetting the oldest', () => {
    const { b } = budget(1, { maxClients: 2 })
    for (const client of ['a', 'b', 'c']) expect(b.fail(client)).toBe(0)
    expect(b.trackedClients).toBe(2)
    expect(b.fail('a')).toBe(0)
    expect(b.fail('c')).toBeGreaterThan(0)
  })
})
