import { createRequire } from 'node:module'
import type IpAddr from 'ipaddr.js'

type IpAddrLibrary = typeof IpAddr
let library: IpAddrLibrary | undefined
// Loaded on first use, as the metrics' API is: only keys with allowed addresses need it.
const ipaddr = (): IpAddrLibrary => (library ??= createRequire(import.meta.url)('ipaddr.js') as IpAddrLibrary)

/** The most entries one key's `allowedAddresses` holds. */
export const MAX_ALLOWED_ADDRESSES = 32

// The longest entry written out: an IPv6 address with an IPv4 tail (45 characters) and "/128".
const MAX_ENTRY_LENGTH = 49
const IPV4_TEXT = /^(?:0|[1-9]\d{0,2})(?:\.(?:0|[1-9]\d{0,2})){3}$/
// Hex groups and colons, a dotted IPv4 tail at most: no zone ID (`%eth0`), no brackets, no spaces.
const IPV6_TEXT = /^[0-9a-f:]+$/i
const PREFIX_TEXT = /^(?:0|[1-9]\d{0,2})$/

function ipv6Text(text: string): boolean {
  const tail = text.lastIndexOf(':')
  if (tail === -1 || !text.includes('.')) return IPV6_TEXT.test(text)
  return IPV6_TEXT.test(text.slice(0, tail + 1)) && IPV4_TEXT.test(text.slice(tail + 1))
}

type Range = readonly [IpAddr.IPv4 | IpAddr.IPv6, number]

/** One entry parsed, or why it is refused. */
function parseEntry(entry: unknown): { readonly range: Range; readonly canonical: string } | string {
  if (typeof entry !== 'string' || entry.length === 0) return `must be a non-empty string, got ${describe(entry)}`
  const shown = JSON.stringify(entry.length > MAX_ENTRY_LENGTH ? `${entry.slice(0, MAX_ENTRY_LENGTH)}…` : entry)
  if (entry.length > MAX_ENTRY_LENGTH) return `${shown} is not an IP address or CIDR range`
  const slash = entry.indexOf('/')
  const addressText = slash === -1 ? entry : entry.slice(0, slash)
  const prefixText = slash === -1 ? null : entry.slice(slash + 1)
  if (entry.includes('%')) return `${shown} must not carry a zone ID`
  let address: IpAddr.IPv4 | IpAddr.IPv6
  if (IPV4_TEXT.test(addressText) && ipaddr().IPv4.isValidFourPartDecimal(addressText)) {
    address = ipaddr().IPv4.parse(addressText)
  } else if (ipv6Text(addressText) && ipaddr().IPv6.isValid(addressText)) {
    address = ipaddr().IPv6.parse(addressText)
    // Clients are matched as IPv4 when they arrive mapped, so a mapped entry would never match as written.
    if (address.isIPv4MappedAddress()) {
      return `${shown} is an IPv4-mapped IPv6 address: write it as IPv4 (such as "10.0.0.0/8")`
    }
  } else {
    return `${shown} is not an IP address or CIDR range`
  }
  const bits = address.kind() === 'ipv4' ? 32 : 128
  let prefix = bits
  if (prefixText !== null) {
    if (!PREFIX_TEXT.test(prefixText) || Number(prefixText) > bits)
      return `${shown} must have a prefix length from 0 to ${bits}`
    prefix = Number(prefixText)
  }
  const network =
    address.kind() === 'ipv4'
      ? ipaddr().IPv4.networkAddressFromCIDR(`${addressText}/${prefix}`)
      : ipaddr().IPv6.networkAddressFromCIDR(`${addressText}/${prefix}`)
  if (network.toString() !== address.toString()) {
    const written = address.kind() === 'ipv4' ? network.toString() : (network as IpAddr.IPv6).toRFC5952String()
    return `${shown} has bits set past its /${prefix} prefix (the range is "${written}/${prefix}")`
  }
  const text = address.kind() === 'ipv4' ? address.toString() : (address as IpAddr.IPv6).toRFC5952String()
  return { range: [address, prefix], canonical: prefix === bits ? text : `${text}/${prefix}` }
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (typeof value === 'string') return 'an empty string'
  return typeof value === 'object' ? (Array.isArray(value) ? 'an array' : 'an object') : `a ${typeof value}`
}

/**
 * Checks a key's `allowedAddresses` (IPv4 and IPv6 addresses and CIDR ranges); returns an error
 * message, or null when it is fine. Null, undefined and an empty list allow every address.
 */
export function allowedAddressesProblem(value: unknown): string | null {
  if (value === null || value === undefined) return null
  if (!Array.isArray(value)) return 'allowedAddresses must be an array of IP addresses and CIDR ranges, or null'
  // Counted before anything is parsed: a long list costs nothing to refuse.
  if (value.length > MAX_ALLOWED_ADDRESSES)
    return `allowedAddresses must hold at most ${MAX_ALLOWED_ADDRESSES} entries, got ${value.length}`
  for (const [index, entry] of value.entries()) {
    const parsed = parseEntry(entry)
    if (typeof parsed === 'string') return `allowedAddresses[${index}] ${parsed}`
  }
  return null
}

/**
 * The entries in their canonical form, repeats removed, first order kept: IPv4 dotted, IPv6 as
 * RFC 5952 writes it, a single address without its `/32` or `/128`. Throws a TypeError on an
 * entry `allowedAddressesProblem` refuses: check first.
 */
export function canonicalAllowedAddresses(value: readonly string[] | null | undefined): string[] {
  if (value === null || value === undefined) return []
  const canonical = new Set<string>()
  for (const entry of value) {
    const parsed = parseEntry(entry)
    if (typeof parsed === 'string') throw new TypeError(`allowed address ${parsed}`)
    canonical.add(parsed.canonical)
  }
  return [...canonical]
}

/** A key's address restriction, parsed once per cached key record. */
export interface AddressAllowlist {
  /** The entries in canonical form. */
  readonly entries: readonly string[]
  /**
   * Whether a client at `address` may use the key: the full address as the proxy settings
   * resolve it, an IPv4-mapped IPv6 address matched as IPv4. An unknown address never matches.
   */
  allows(address: string | undefined): boolean
}

/** The allowlist of a key record's `allowedAddresses`; null for none (every address). Entries that do not parse match nothing. */
export function compileAllowlist(value: readonly string[] | null | undefined): AddressAllowlist | null {
  if (value === null || value === undefined || !Array.isArray(value) || value.length === 0) return null
  const ipv4: Range[] = []
  const ipv6: Range[] = []
  const entries: string[] = []
  for (const entry of value.slice(0, MAX_ALLOWED_ADDRESSES)) {
    const parsed = parseEntry(entry)
    // A store holding garbage narrows the key, never widens it: that entry allows nobody.
    if (typeof parsed === 'string') continue
    entries.push(parsed.canonical)
    ;(parsed.range[0].kind() === 'ipv4' ? ipv4 : ipv6).push(parsed.range)
  }
  return Object.freeze({
    entries: Object.freeze(entries),
    allows(address: string | undefined): boolean {
      if (address === undefined || !ipaddr().isValid(address)) return false
      let parsed: IpAddr.IPv4 | IpAddr.IPv6
      try {
        // `process` turns an IPv4-mapped IPv6 address into the IPv4 one.
        parsed = ipaddr().process(address)
      } catch {
        return false
      }
      // Only the four-part form counts as IPv4: `10.1` or `0x0a.0.0.1` are not how proxies write addresses.
      if (parsed.kind() === 'ipv4' && !address.includes(':') && !ipaddr().IPv4.isValidFourPartDecimal(address))
        return false
      const ranges = parsed.kind() === 'ipv4' ? ipv4 : ipv6
      for (const [network, prefix] of ranges) if (parsed.match(network, prefix)) return true
      return false
    },
  })
}
