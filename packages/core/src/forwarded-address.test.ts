import { describe, expect, it } from 'vitest'
import { addressFromHeader, resolveClientAddressHeader } from './forwarded-address.js'

describe('addressFromHeader', () => {
  it('reads the entry hops from the right, never one the client wrote further left', () => {
    expect(addressFromHeader('6.6.6.6, 203.0.113.5', 1)).toBe('203.0.113.5')
    expect(addressFromHeader('6.6.6.6, 203.0.113.5, 10.0.0.2', 2)).toBe('203.0.113.5')
    // Fewer entries than proxies: each was written by one of them, the leftmost is the client.
    expect(addressFromHeader('203.0.113.5', 3)).toBe('203.0.113.5')
  })

  it('reads an address with a port by its address, and nothing else as one', () => {
    expect(addressFromHeader('203.0.113.5:4711', 1)).toBe('203.0.113.5')
    expect(addressFromHeader('[2001:db8::1]:443', 1)).toBe('2001:db8::1')
    expect(addressFromHeader(' 2001:db8::1 ', 1)).toBe('2001:db8::1')
    for (const value of ['unknown', '', 'example.com', '999.1.1.1', '[1.2.3.4]:80', '1.2.3.4, garbage'])
      expect(addressFromHeader(value, 1), value).toBeUndefined()
    expect(addressFromHeader(null, 1)).toBeUndefined()
  })
})

describe('resolveClientAddressHeader', () => {
  it('is null unless a header is named, lower-cases it, and counts one proxy by default', () => {
    expect(resolveClientAddressHeader(undefined, undefined)).toBeNull()
    expect(resolveClientAddressHeader('X-Forwarded-For', undefined)).toEqual({ name: 'x-forwarded-for', hops: 1 })
    expect(resolveClientAddressHeader('cf-connecting-ip', 2)).toEqual({ name: 'cf-connecting-ip', hops: 2 })
  })

  it('throws a SaikuConfigError naming a bad option', () => {
    expect(() => resolveClientAddressHeader('x forwarded', undefined)).toThrow(/^clientAddressHeader: /)
    expect(() => resolveClientAddressHeader(42, undefined)).toThrow(/^clientAddressHeader: /)
    for (const hops of [0, 1.5, 33, '1'])
      expect(() => resolveClientAddressHeader('x-forwarded-for', hops), String(hops)).toThrow(/^proxyHops: /)
    expect(() => resolveClientAddressHeader(undefined, 1)).toThrow(/^proxyHops: expected no value without/)
  })
})
