import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { allowedAddressesProblem, canonicalAllowedAddresses, compileAllowlist } from './address-allowlist.js'

// The matcher against a reference model: addresses as big integers, a range as its first `prefix` bits.

const ipv4 = fc.tuple(...Array.from({ length: 4 }, () => fc.integer({ min: 0, max: 255 })))
const ipv6 = fc.tuple(...Array.from({ length: 8 }, () => fc.integer({ min: 0, max: 0xffff })))

const v4Value = (octets: readonly number[]): bigint => octets.reduce((sum, octet) => (sum << 8n) | BigInt(octet), 0n)
const v6Value = (groups: readonly number[]): bigint => groups.reduce((sum, group) => (sum << 16n) | BigInt(group), 0n)
const v4Text = (octets: readonly number[]): string => octets.join('.')
const v6Text = (groups: readonly number[]): string => groups.map((group) => group.toString(16)).join(':')
/** The network of `value` under `prefix` of `bits`: the host bits cleared. */
const network = (value: bigint, prefix: number, bits: number): bigint =>
  prefix === 0 ? 0n : (value >> BigInt(bits - prefix)) << BigInt(bits - prefix)
const fromValue4 = (value: bigint): number[] => [24n, 16n, 8n, 0n].map((shift) => Number((value >> shift) & 0xffn))
const fromValue6 = (value: bigint): number[] =>
  [112n, 96n, 80n, 64n, 48n, 32n, 16n, 0n].map((shift) => Number((value >> shift) & 0xffffn))

describe('compileAllowlist against a reference model', () => {
  it('admits an IPv4 client exactly when its first prefix bits are the range’s, also when written IPv4-mapped', () => {
    fc.assert(
      fc.property(
        ipv4,
        fc.integer({ min: 0, max: 32 }),
        ipv4,
        fc.integer({ min: -1, max: 31 }),
        (base, prefix, client, flip) => {
          const range = network(v4Value(base), prefix, 32)
          // A client inside the range, with one bit flipped (-1: none): near misses at every bit, inside and past the prefix.
          const inside = range | (v4Value(client) & ((1n << BigInt(32 - prefix)) - 1n))
          const clientValue = flip === -1 ? inside : inside ^ (1n << BigInt(flip))
          const entry = `${v4Text(fromValue4(range))}/${prefix}`
          expect(allowedAddressesProblem([entry])).toBeNull()
          const expected = network(clientValue, prefix, 32) === range
          const list = compileAllowlist([entry])!
          const text = v4Text(fromValue4(clientValue))
          expect(list.allows(text)).toBe(expected)
          expect(list.allows(`::ffff:${text}`)).toBe(expected)
          // An IPv4 range never admits an IPv6 client that is not IPv4-mapped.
          expect(list.allows(`2001:db8::${text}`)).toBe(false)
        },
      ),
    )
  })

  it('admits an IPv6 client exactly when its first prefix bits are the range’s', () => {
    fc.assert(
      fc.property(
        ipv6,
        fc.integer({ min: 0, max: 128 }),
        ipv6,
        fc.integer({ min: -1, max: 127 }),
        (base, prefix, client, flip) => {
          const range = network(v6Value(base), prefix, 128)
          const inside = range | (v6Value(client) & ((1n << BigInt(128 - prefix)) - 1n))
          const clientValue = flip === -1 ? inside : inside ^ (1n << BigInt(flip))
          const groups = fromValue6(range)
          // IPv4-mapped ranges are written as IPv4: not drawn here.
          fc.pre(!(groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff))
          const entry = `${v6Text(groups)}/${prefix}`
          expect(allowedAddressesProblem([entry])).toBeNull()
          const clientGroups = fromValue6(clientValue)
          const mapped = clientGroups.slice(0, 5).every((group) => group === 0) && clientGroups[5] === 0xffff
          const expected = !mapped && network(clientValue, prefix, 128) === range
          expect(compileAllowlist([entry])!.allows(v6Text(clientGroups))).toBe(expected)
        },
      ),
    )
  })

  it('refuses exactly the entries with a bit set past the prefix, and writes the rest once, in one form', () => {
    fc.assert(
      fc.property(ipv4, fc.integer({ min: 0, max: 32 }), (base, prefix) => {
        const value = v4Value(base)
        const entry = `${v4Text(base)}/${prefix}`
        const hostBits = value !== network(value, prefix, 32)
        expect(allowedAddressesProblem([entry]) !== null).toBe(hostBits)
        if (hostBits) return
        const canonical = canonicalAllowedAddresses([entry])
        expect(canonicalAllowedAddresses(canonical)).toEqual(canonical)
        expect(canonical).toEqual([prefix === 32 ? v4Text(base) : entry])
      }),
    )
  })
})
