import { MemoryKeyStore, saikuAuth, withSaiku } from '@saiku/fetch'

export const store = new MemoryKeyStore() // or @saiku/sqlite, @saiku/postgres
const auth = saikuAuth(store)

interface DenoServeInfo {
  remoteAddr: { hostname: string }
}

// `deno serve server.ts` serves the default export; Deno passes the connection beside each request.
export default {
  fetch: withSaiku(auth, (_request, principal) => Response.json(principal!.tenant), {
    clientAddress: (_request, info: DenoServeInfo) => info.remoteAddr.hostname,
  }),
}
