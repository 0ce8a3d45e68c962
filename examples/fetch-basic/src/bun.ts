import { MemoryKeyStore } from '@saiku/fetch'
import { createHandler } from './app.ts'
import { demoPort, printDemo, seedDemoTenant } from './demo.ts'
import type { BunServer } from './runtimes.ts'

// Bun: `bun src/bun.ts`. Bun.serve passes the server beside the request; it knows the client's address.
const store = new MemoryKeyStore()
const { key } = await seedDemoTenant(store)
const handler = createHandler<BunServer>(store, (request, server) => server.requestIP(request)?.address)
const server = Bun.serve({ port: demoPort(process.env), hostname: '127.0.0.1', fetch: handler })
printDemo(`Bun ${Bun.version}`, server.port, key)
