import type { IncomingMessage } from 'node:http'
import { saikuAuth, type KeyStore, type SaikuNodeAuth } from '@saiku/node'

// Behind one proxy of yours, the last X-Forwarded-For entry is the address it saw; the ones before it
// are whatever the client sent. A request without the header came straight in: its socket is the client.
export function lastForwardedHop(req: IncomingMessage): string | undefined {
  const hops = String(req.headers['x-forwarded-for'] ?? '').split(',')
  return hops.at(-1)!.trim() || req.socket.remoteAddress
}

export function createAuth(store: KeyStore): SaikuNodeAuth {
  return saikuAuth(store, { clientAddress: lastForwardedHop })
}
