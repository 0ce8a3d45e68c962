import { isIP } from 'node:net'
import ipaddr from 'ipaddr.js'

/**
 * Which webhook URLs and addresses the operator allows beyond public https. Both default to false:
 * a tenant's URL reaches only public unicast addresses, never the server's own network.
 */
export interface AddressPolicy {
  /** Development: `http://` for loopback hosts, and loopback addresses (127/8, ::1). WEBHOOKS_ALLOW_LOOPBACK=1. */
  readonly allowLoopback: boolean
  /** Private networks: 10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7. WEBHOOKS_ALLOW_PRIVATE=1. */
  readonly allowPrivate: boolean
}

export const STRICT_POLICY: AddressPolicy = Object.freeze({ allowLoopback: false, allowPrivate: false })

export const MAX_URL_LENGTH = 2048

const LOOPBACK_NAMES = new Set(['localhost', 'localhost.'])

/** The URL's host without IPv6 brackets. */
const bareHost = (url: URL): string => url.hostname.replace(/^\[(.*)\]$/, '$1')

function isLoopbackHost(host: string): boolean {
  if (LOOPBACK_NAMES.has(host.toLowerCase()) || host.toLowerCase().endsWith('.localhost')) return true
  return isIP(host) !== 0 && rangeOf(host) === 'loopback'
}

/** What is wrong with a webhook URL, or null: checked when an endpoint is added, and again before each send. */
export function webhookUrlProblem(text: unknown, policy: AddressPolicy): string | null {
  if (typeof text !== 'string' || text.length === 0) return 'url must be a string'
  if (text.length > MAX_URL_LENGTH) return `url must be at most ${MAX_URL_LENGTH} characters`
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return 'url must be an absolute URL'
  }
  if (url.username !== '' || url.password !== '') return 'url must not hold a user name or password'
  if (url.hash !== '') return 'url must not have a #fragment'
  const host = bareHost(url)
  if (url.protocol === 'http:') {
    if (!(policy.allowLoopback && isLoopbackHost(host)))
      return policy.allowLoopback ? 'url must use https (http only for a loopback host)' : 'url must use https'
  } else if (url.protocol !== 'https:') return 'url must use https'
  // A literal address is checked now as well as at send time: the answer comes at once.
  if (isIP(host) !== 0) {
    const refusal = addressRefusal(host, policy)
    if (refusal !== null) return `url must not point at ${refusal}`
  }
  return null
}

/** ipaddr.js's range, IPv4-mapped IPv6 (::ffff:10.0.0.1) taken as the IPv4 address it carries. */
function rangeOf(address: string): string {
  return ipaddr.process(address).range()
}

const PRIVATE_RANGES = new Set(['private', 'uniqueLocal', 'carrierGradeNat'])

/**
 * Why a resolved address may not be connected to (a phrase for the delivery log), or null when it may.
 * Only public unicast passes by default; link-local (169.254.169.254, the cloud metadata service; fe80::/10),
 * multicast, unspecified, reserved and the IPv6 forms that carry an IPv4 address elsewhere (6to4, Teredo,
 * NAT64) are refused whatever the policy.
 */
export function addressRefusal(address: string, policy: AddressPolicy): string | null {
  if (!ipaddr.isValid(address) || isIP(address) === 0) return 'an address that is not an IP address'
  const range = rangeOf(address)
  if (range === 'unicast') return null
  if (range === 'loopback') return policy.allowLoopback ? null : 'a loopback address'
  if (PRIVATE_RANGES.has(range)) return policy.allowPrivate ? null : 'a private address'
  if (range === 'linkLocal') return 'a link-local address'
  return `a ${range} address`
}
