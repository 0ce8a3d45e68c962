import { isIP } from 'node:net'
import { SaikuConfigError } from './errors.js'

/**
 * Where an adapter without proxy settings of its own (the Fetch API) reads the client address behind
 * proxies you run: a header you name, never one trusted by default. `hops` is how many of your proxies
 * append to it: the address is the entry that many from the right, the last one a proxy of yours wrote.
 */
export interface ClientAddressHeader {
  /** Lower case. */
  readonly name: string
  readonly hops: number
}

// RFC 9110 token characters: what a header name may hold.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/i
/** More proxies than this in front of one app is a mistake in the option, not a deployment. */
const MAX_HOPS = 32

/** Checks the options once, when the middleware is built: null when no header is named. */
export function resolveClientAddressHeader(name: unknown, hops: unknown): ClientAddressHeader | null {
  if (name === undefined) {
    if (hops !== undefined) throw new SaikuConfigError('proxyHops', 'no value without clientAddressHeader', hops)
    return null
  }
  if (typeof name !== 'string' || !HEADER_NAME.test(name))
    throw new SaikuConfigError('clientAddressHeader', 'a header name, such as "x-forwarded-for"', name)
  if (hops !== undefined && (typeof hops !== 'number' || !Number.isInteger(hops) || hops < 1 || hops > MAX_HOPS))
    throw new SaikuConfigError('proxyHops', `a whole number of proxies from 1 to ${MAX_HOPS}`, hops)
  return Object.freeze({ name: name.toLowerCase(), hops: hops ?? 1 })
}

/** One entry as a proxy writes it: an address, maybe with a port (`1.2.3.4:80`, `[2001:db8::1]:80`). */
function entryAddress(entry: string): string | undefined {
  const text = entry.trim()
  if (isIP(text) !== 0) return text
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(text)
  if (bracketed !== null) return isIP(bracketed[1]!) === 6 ? bracketed[1] : undefined
  const withPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(text)
  return withPort !== null && isIP(withPort[1]!) === 4 ? withPort[1] : undefined
}

/**
 * The client address in a header's value (repeated lines joined with commas, as the Fetch API joins them):
 * the entry `hops` from the right, or the leftmost when fewer proxies wrote one (each was one of yours).
 * Entries further left were written by the client and are never read. Undefined when the header is absent
 * or that entry is no address: the request is then counted with every other request of unknown address.
 */
export function addressFromHeader(value: string | null | undefined, hops: number): string | undefined {
  if (value === null || value === undefined) return undefined
  const entries = value.split(',')
  return entryAddress(entries[Math.max(0, entries.length - hops)]!)
}
