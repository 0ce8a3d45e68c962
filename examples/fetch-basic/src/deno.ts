import { MemoryKeyStore } from '@saiku/fetch'
import { createHandler } from './app.ts'
import { demoPort, printDemo, seedDemoTenant } from './demo.ts'
import type { DenoServeInfo } from './runtimes.ts'

// Deno: `pnpm start:deno` (see package.json: on the installed node_modules, nothing fetched, no update check).
const store = new MemoryKeyStore()
const { key } = await seedDemoTenant(store)
const handler = createHandler<DenoServeInfo>(store, (_request, info) => info.remoteAddr.hostname)
Deno.serve(
  {
    port: demoPort(Deno.env.toObject()),
    hostname: '127.0.0.1',
    onListen: ({ port }) => printDemo(`Deno ${Deno.version.deno}`, port, key),
  },
  handler,
)
