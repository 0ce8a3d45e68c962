import { saikuAuth, type KeyStore, type SaikuNodeAuth } from '@saiku/node'

// Behind one proxy of yours that appends to X-Forwarded-For: its last entry is the address that proxy saw.
// Entries further left are whatever the client sent, and are never read.
export function createAuth(store: KeyStore): SaikuNodeAuth {
  return saikuAuth(store, { clientAddressHeader: 'x-forwarded-for', proxyHops: 1 })
}
