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

/**
 * The key a client is counted under: an IPv4 address as it is (IPv4-mapped IPv6
 * too), an IPv6 address cut to its first `ipv6PrefixBits` bits, since one
 * client usually holds a whole /64 and could rotate through it. Anything else
 * (no address, a Unix socket) is counted as one client.
 */
export function clientKey(address: string | undefined, ipv6PrefixBits = 64): string {
  if (address === undefined || address === '') return 'unknown'
  // The common case, checked without a regular expression: dotted digits only.
  if (isDottedQuad(address) || isIPv4(address)) return address
  if (!isIPv6(address)) return 'unknown'
  const groups = ipv6Groups(address)
  if (groups === null) return 'unknown'
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `${groups[6]! >> 8}.${groups[6]! & 0xff}.${groups[7]! >> 8}.${groups[7]! & 0xff}`
  }
  const kept: string[] = []
  for (let i = 0; i < 8; i++) {
    const bits = Math.max(0, Math.min(16, ipv6PrefixBits - i * 16))
    if (bits === 0) break
    const mask = bits === 16 ? 0xffff : (0xffff << (16 - bits)) & 0xffff
    kept.push((groups[i]! & mask).toString(16))
  }
  return `${kept.join(':')}::/${ipv6PrefixBits}`
}
