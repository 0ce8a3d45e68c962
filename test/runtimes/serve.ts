// The Fetch example's handler on whichever runtime runs this file (Bun, Deno or Node), on a
// free loopback port, over one fixed configuration the runtime tests drive over HTTP: the
// demo tenant's key, a revoked key, a tenant allowed 3 requests a minute, and one whose
// subscription is past due. Prints one JSON line: the port and the keys.
import { createKeyManager, mintApiKey, MemoryKeyStore } from '@saiku/core'
import { createHandler } from '../../examples/fetch-basic/src/app.ts'
import { seedDemoTenant } from '../../examples/fetch-basic/src/demo.ts'
import type { BunServer, DenoServeInfo } from '../../examples/fetch-basic/src/runtimes.ts'

const store = new MemoryKeyStore()
const keys = createKeyManager(store)
const tenant = (tenantId: string, tenantSlug: string, extra: object) =>
  store.putTenant({ tenantId, tenantSlug, tier: 'starter', connectionName: 'warehouse', ...extra } as never)
tenant('2b0f6d1e-6a43-4a3f-8f0e-5a4b0c2d9e11', 'tight', {
  subscription: { status: 'active' },
  limits: { perMinute: 3, perHour: 100 },
})
tenant('7c9e2f4a-1b3d-4e5f-9a8b-0c1d2e3f4a5b', 'late', { subscription: { status: 'past_due' } })

const demo = (await seedDemoTenant(store)).key
const revoked = await keys.create('81e301f2-5d0c-4c4e-9a57-3f0e7f1d2c10', { label: 'revoked' })
await keys.revoke('81e301f2-5d0c-4c4e-9a57-3f0e7f1d2c10', revoked.keyId)
const printed = {
  demo,
  revoked: revoked.key,
  tight: (await keys.create('2b0f6d1e-6a43-4a3f-8f0e-5a4b0c2d9e11', { label: 'tight' })).key,
  late: (await keys.create('7c9e2f4a-1b3d-4e5f-9a8b-0c1d2e3f4a5b', { label: 'late' })).key,
  // Well formed, checksum and all, in no store.
  unknown: mintApiKey().key,
}
const ready = (runtime: string, port: number) => console.log(JSON.stringify({ runtime, port, keys: printed }))

if ('Bun' in globalThis) {
  const handler = createHandler<BunServer>(store, (request, server) => server.requestIP(request)?.address)
  const server = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: handler })
  ready(`bun ${Bun.version}`, server.port)
} else if ('Deno' in globalThis) {
  const handler = createHandler<DenoServeInfo>(store, (_request, info) => info.remoteAddr.hostname)
  Deno.serve(
    { port: 0, hostname: '127.0.0.1', onListen: ({ port }) => ready(`deno ${Deno.version.deno}`, port) },
    handler,
  )
} else {
  const { serve } = await import('@hono/node-server')
  const handler = createHandler<{ incoming: { socket: { remoteAddress?: string | undefined } } }>(
    store,
    (_request, { incoming }) => incoming.socket.remoteAddress,
  )
  serve({ fetch: handler, port: 0, hostname: '127.0.0.1' }, ({ port }) => ready(`node ${process.version}`, port))
}
