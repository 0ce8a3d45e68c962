import { MemoryKeyStore, saikuAuth, withSaiku } from '@saiku/fetch'

export const store = new MemoryKeyStore() // or @saiku/sqlite, @saiku/postgres
const auth = saikuAuth(store)

interface BunServer {
  requestIP(request: Request): { address: string } | null
}

// `bun run server.ts` serves the default export; Bun passes its server beside each request.
export default {
  fetch: withSaiku(auth, (_request, principal) => Response.json(principal!.tenant), {
    clientAddress: (request, server: BunServer) => server.requestIP(request)?.address,
  }),
}
