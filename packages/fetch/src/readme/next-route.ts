import { MemoryKeyStore, requirePermission, saikuAuth, withSaiku } from '@saiku/fetch'

// In one module of the app (lib/saiku.ts): every route shares one authenticator, its cache and its limits.
export const store = new MemoryKeyStore() // or @saiku/sqlite, @saiku/postgres
export const auth = saikuAuth(store, {
  // A route handler is given no client address: read the one your proxy (your host's) appends.
  clientAddressHeader: 'x-forwarded-for',
})

// app/me/tenant/route.ts
export const GET = withSaiku(auth, (_request, principal) => Response.json(principal!.tenant))

// app/me/api-keys/route.ts
const keysRead = requirePermission('keys:read')
export const listKeys = withSaiku(auth, async (_request, principal) => {
  const refused = keysRead(principal)
  if (refused !== null) return refused
  return Response.json({ keys: await auth.authenticator.keys.list(principal!.tenant.tenantId) })
})
