import { isIPv4, isIPv6 } from 'node:net'

/** Expands an IPv6 address to its eight 16-bit groups; null when it is not one. */
function ipv6Groups(address: string): number[] | null {
  let text = address
  const zone = text.indexOf('%')
  if (zone !== -1) text = text.slice(0, zone)
  const groups: number[] = []
  // An embedded IPv4 tail (::ffff:1.2.3.4) counts as two groups.
  const lastColon = text.lastIndexOf(':')
  const tail = text.slice(lastColon + 1)
  let tailGroups: number[] = []
  if (tail.includes('.')) {
    if (!isIPv4(tail)) return null
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number]
    tailGroups = [(a << 8) | b, (c << 8) | d]
    text = `${text.slice(0, lastColon + 1)}0`
  }
  const halves = text.split('::')
  if (halves.length > 2) return null
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((hex) => parseInt(hex, 16)))
  const head = parse(halves[0]!)
  const rest = halves.length === 2 ? parse(halves[1]!) : []
  if (tailGroups.length > 0) {
    ;(halves.length === 2 ? rest : head).pop()
  }
  const missing = 8 - head.length - rest.length - tailGroups.length
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null
  groups.push(...head, ...Array<number>(halves.length === 2 ? missing : 0).fill(0), ...rest, ...tailGroups)
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null
}

/** A canonical IPv4 address (four decimal octets of 0 to 255, no leading zeros), checked by hand. */
function isDottedQuad(address: string): boolean {
  if (address.length < 7 || address.length > 15) return false
  let dots = 0
  let octet = 0
  let digits = 0
  for (let i = 0; i <= address.length; i++) {
    const code = i === address.length ? 46 : address.charCodeAt(i)
    if (code === 46) {
      if (digits === 0 || octet > 255) return false
      dots++
      octet = 0
      digits = 0
    } else if (code >= 48 && code <= 57) {
      if (digits === 1 && octet === 0) return false
      octet = octet * 10 + (code - 48)
      digits++
    } else {
      return false
    }
  }
  return dots === 4
}

/** Two 16-bit groups as a dotted quad. */
function dottedQuad(high: number, low: number): string {
  return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`
}

/**
 * The IPv4 host an IPv6 address stands for, where its form says so, else null. A translator or
 * tunnel writes each of these for one IPv4 host, which is then counted as itself, as over IPv4,
 * instead of with every other such host in one /64 (or, for 6to4, spread over its own /48):
 * - IPv4-mapped `::ffff:a.b.c.d`, and IPv4-translated `::ffff:0:a.b.c.d` (SIIT, RFC 6145);
 * - IPv4-compatible `::a.b.c.d` (RFC 4291, deprecated), but not `::`, `::1` nor any `::0.x.y.z`;
 * - NAT64's well-known prefix `64:ff9b::/96` (RFC 6052);
 * - 6to4 `2002:a.b.c.d::/48` (RFC 3056): the host of that IPv4 address holds the whole /48;
 * - Teredo `2001:0::/32` (RFC 4380): the client's public IPv4 address, inverted in the last 32 bits.
 */
function embeddedIpv4(groups: readonly number[]): string | null {
  const [g0, g1, g2, g3, g4, g5, g6, g7] = groups as [number, number, number, number, number, number, number, number]
  if (g0 === 0x2002) return dottedQuad(g1, g2)
  if (g0 === 0x2001 && g1 === 0) return dottedQuad(g6 ^ 0xffff, g7 ^ 0xffff)
  if (g2 !== 0 || g3 !== 0) return null
  const wellKnownNat64 = g0 === 0x64 && g1 === 0xff9b && g4 === 0 && g5 === 0
  const zeroHead = g0 === 0 && g1 === 0
  const mapped = zeroHead && g4 === 0 && g5 === 0xffff
  const translated = zeroHead && g4 === 0xffff && g5 === 0
  const compatible = zeroHead && g4 === 0 && g5 === 0 && g6 !== 0
  return wellKnownNat64 || mapped || translated || compatible ? dottedQuad(g6, g7) : null
}

/**
 * The key a client is counted under: an IPv4 address as it is, an IPv6 address that
 * stands for an IPv4 host (see `embeddedIpv4`) as that IPv4 address, any other IPv6
 * address cut to its first `ipv6PrefixBits` bits, since one client usually holds a
 * whole /64 and could rotate through it. Anything else (no address, a Unix socket)
 * is counted as one client.
 *
 * NAT64's local-use prefix `64:ff9b:1::/48` (RFC 8215) is counted by the whole address:
 * the operator's prefix there may be 48 to 96 bits long, which moves the IPv4 address
 * within it, and the translator writes every other bit, so one address is one IPv4 host.
 */
export function clientKey(address: string | undefined, ipv6PrefixBits = 64): string {
  if (address === undefined || address === '') return 'unknown'
  // The common case, checked without a regular expression: dotted digits only.
  if (isDottedQuad(address) || isIPv4(address)) return address
  if (!isIPv6(address)) return 'unknown'
  const groups = ipv6Groups(address)
  if (groups === null) return 'unknown'
  const ipv4 = embeddedIpv4(groups)
  if (ipv4 !== null) return ipv4
  const prefixBits = groups[0] === 0x64 && groups[1] === 0xff9b && groups[2] === 1 ? 128 : ipv6PrefixBits
  const kept: string[] = []
  for (let i = 0; i < 8; i++) {
    const bits = Math.max(0, Math.min(16, prefixBits - i * 16))
    if (bits === 0) break
    const mask = bits === 16 ? 0xffff : (0xffff << (16 - bits)) & 0xffff
    kept.push((groups[i]! & mask).toString(16))
  }
  return `${kept.join(':')}::/${prefixBits}`
}
