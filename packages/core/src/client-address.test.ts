import { describe, expect, it } from 'vitest'
import { clientKey } from './client-address.js'

describe('clientKey', () => {
  it.each([
    ['203.0.113.7', '203.0.113.7'],
    ['::ffff:203.0.113.7', '203.0.113.7'],
    ['::ffff:cb00:7107', '203.0.113.7'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::9', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:ffff:ffff:ffff:ffff', '2001:db8:1:2::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    [undefined, 'unknown'],
    ['', 'unknown'],
    ['not an address', 'unknown'],
    ['1.2.3.4, 5.6.7.8', 'unknown'],
    ['256.1.1.1', 'unknown'],
    ['01.2.3.4', 'unknown'],
    ['1.2.3', 'unknown'],
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
  ])('counts %j as %j', (address, key) => {
    expect(clientKey(address)).toBe(key)
  })

  it('groups by the prefix asked for', () => {
    expect(clientKey('2001:db8:1:2:3:4:5:6', 48)).toBe('2001:db8:1::/48')
    expect(clientKey('2001:db8:1:2:3:4:5:6', 56)).toBe('2001:db8:1:0::/56')
    expect(clientKey('2001:db8:1:2ff:3:4:5:6', 56)).toBe('2001:db8:1:200::/56')
    expect(clientKey('2001:db8:1:2:3:4:5:6', 128)).toBe('2001:db8:1:2:3:4:5:6::/128')
  })

  it('puts every address of one /64 together and neighbouring /64s apart', () => {
    const keys = new Set(Array.from({ length: 100 }, (_, i) => clientKey(`2001:db8:aa:bb:${i.toString(16)}::1`)))
    expect([...keys]).toEqual(['2001:db8:aa:bb::/64'])
    expect(clientKey('2001:db8:aa:bc::1')).not.toBe(clientKey('2001:db8:aa:bb::1'))
  })
})
