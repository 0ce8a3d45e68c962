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
    // IPv6 forms of one IPv4 host: counted as that host.
    ['::ffff:0:203.0.113.7', '203.0.113.7'],
    ['::203.0.113.7', '203.0.113.7'],
    ['::cb00:7107', '203.0.113.7'],
    ['64:ff9b::203.0.113.7', '203.0.113.7'],
    ['64:ff9b::cb00:7107', '203.0.113.7'],
    ['2002:cb00:7107:5::1', '203.0.113.7'],
    ['2002:cb00:7107:ffff:1:2:3:4', '203.0.113.7'],
    ['2001:0:4136:e378:8000:63bf:3fff:fdd2', '192.0.2.45'],
    // Not such a form: the unspecified and loopback addresses, and IPv6 beside the NAT64 prefix.
    ['::', '0:0:0:0::/64'],
    ['::0.0.0.9', '0:0:0:0::/64'],
    ['64:ff9b::1:203.0.113.7', '64:ff9b:0:0::/64'],
    ['64:ff9b:0:1::cb00:7107', '64:ff9b:0:1::/64'],
    // NAT64's local-use prefix: the IPv4 address sits where the operator's prefix length puts it, so the whole address.
    ['64:ff9b:1:abcd::203.0.113.7', '64:ff9b:1:abcd:0:0:cb00:7107::/128'],
    ['64:ff9b:1:cb00:71:700::', '64:ff9b:1:cb00:71:700:0:0::/128'],
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

  it('counts the IPv4 hosts behind NAT64 and IPv4-compatible addresses apart, and each as it is over IPv4', () => {
    const hosts = Array.from({ length: 50 }, (_, i) => `198.51.100.${i + 1}`)
    for (const form of [(v4: string) => `64:ff9b::${v4}`, (v4: string) => `::${v4}`, (v4: string) => `::ffff:${v4}`]) {
      expect(hosts.map((v4) => clientKey(form(v4)))).toEqual(hosts)
    }
    const localUse = new Set(hosts.map((v4) => clientKey(`64:ff9b:1::${v4}`)))
    expect(localUse.size).toBe(hosts.length)
    expect(clientKey('64:ff9b:1::198.51.100.1', 48)).toBe(clientKey('64:ff9b:1::198.51.100.1'))
  })

  it('puts every address of one /64 together and neighbouring /64s apart', () => {
    const keys = new Set(Array.from({ length: 100 }, (_, i) => clientKey(`2001:db8:aa:bb:${i.toString(16)}::1`)))
    expect([...keys]).toEqual(['2001:db8:aa:bb::/64'])
    expect(clientKey('2001:db8:aa:bc::1')).not.toBe(clientKey('2001:db8:aa:bb::1'))
  })
})
