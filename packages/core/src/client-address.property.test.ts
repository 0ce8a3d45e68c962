import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { clientKey } from './client-address.js'

// Groups drawn mostly from the values the IPv4-embedding forms test for, so that near misses are common.
const groupArb = fc.oneof(
  fc.constantFrom(0, 1, 0xffff, 0x2001, 0x2002, 0x64, 0xff9b, 0xcb00, 0x7107),
  fc.integer({ min: 0, max: 0xffff }),
)
// The head of each form and of its near misses, then any groups: the forms' edges are reached every run.
const heads: readonly (readonly number[])[] = [
  [],
  [0, 0, 0, 0, 0, 0],
  [0, 0, 0, 0, 0, 0xffff],
  [0, 0, 0, 0, 0xffff, 0],
  [0, 0, 0, 0, 0, 0, 0],
  [0x64, 0xff9b, 0, 0, 0, 0],
  [0x64, 0xff9b, 1],
  [0x64, 0xff9b, 0, 1],
  [0x2002],
  [0x2001, 0],
  [0x2001, 1],
]
const groupsArb = fc
  .tuple(fc.constantFrom(...heads), fc.array(groupArb, { minLength: 8, maxLength: 8 }))
  .map(([head, rest]) => [...head, ...rest].slice(0, 8))

const hex = (groups: readonly number[]): string[] => groups.map((g) => g.toString(16))
const quad = (high: number, low: number): string => `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`

/** Every spelling of one address a socket or a proxy may hand over. */
function spellings(groups: readonly number[]): string[] {
  const full = groups.map((g) => g.toString(16).padStart(4, '0')).join(':')
  const compressed = new URL(`http://[${full}]/`).hostname.slice(1, -1)
  return [
    full,
    full.toUpperCase(),
    hex(groups).join(':'),
    compressed,
    `${hex(groups.slice(0, 6)).join(':')}:${quad(groups[6]!, groups[7]!)}`,
    `${compressed}%eth0`,
  ]
}

/** Who an address is counted as, stated from the address's form alone (the reference for `clientKey`). */
function counted(g: readonly number[]): string {
  const v4 = (high: number, low: number) => `v4 ${quad(high, low)}`
  if (g[0] === 0x2002) return v4(g[1]!, g[2]!)
  if (g[0] === 0x2001 && g[1] === 0) return v4(g[6]! ^ 0xffff, g[7]! ^ 0xffff)
  if (g[2] === 0 && g[3] === 0) {
    const zeroHead = g[0] === 0 && g[1] === 0
    if (
      (g[0] === 0x64 && g[1] === 0xff9b && g[4] === 0 && g[5] === 0) ||
      (zeroHead && g[4] === 0 && g[5] === 0xffff) ||
      (zeroHead && g[4] === 0xffff && g[5] === 0) ||
      (zeroHead && g[4] === 0 && g[5] === 0 && g[6] !== 0)
    )
      return v4(g[6]!, g[7]!)
  }
  if (g[0] === 0x64 && g[1] === 0xff9b && g[2] === 1) return `v6 ${g.join(':')}`
  return `v6/64 ${g.slice(0, 4).join(':')}`
}

describe('clientKey against hostile input', () => {
  it('never throws and answers the same for the same string, whatever it is given', () => {
    const hostile = fc.oneof(
      fc.string(),
      fc.string({ unit: 'grapheme' }),
      fc.stringMatching(/^[0-9a-fA-F:.%]{0,60}$/),
      fc.ipV6(),
      fc.ipV4(),
      fc.ipV4Extended(),
      fc.ipV6().map((v6) => `${v6}%${'z'.repeat(3)}`),
    )
    fc.assert(
      fc.property(hostile, fc.integer({ min: 0, max: 128 }), (address, bits) => {
        const key = clientKey(address, bits)
        expect(typeof key).toBe('string')
        expect(clientKey(address, bits)).toBe(key)
      }),
      { numRuns: 1_500 },
    )
  })

  it('counts every spelling of an address alike, and two addresses alike only when they stand for one client', () => {
    fc.assert(
      fc.property(groupsArb, groupsArb, (a, b) => {
        const keysOfA = new Set(spellings(a).map((address) => clientKey(address)))
        expect(keysOfA.size).toBe(1)
        const [keyOfA] = keysOfA
        expect(keyOfA).not.toBe('unknown')
        // An IPv4 host is counted as the address it has over IPv4.
        if (counted(a).startsWith('v4 ')) expect(keyOfA).toBe(counted(a).slice(3))
        expect(clientKey(spellings(b)[3]) === keyOfA).toBe(counted(a) === counted(b))
      }),
      { numRuns: 2_000 },
    )
  })

  it('never counts an IPv6 client that stands for no IPv4 host as an IPv4 address', () => {
    fc.assert(
      fc.property(groupsArb, fc.ipV4(), (groups, v4) => {
        if (counted(groups).startsWith('v4')) return
        expect(clientKey(spellings(groups)[3])).not.toBe(clientKey(v4))
      }),
      { numRuns: 1_500 },
    )
  })
})
