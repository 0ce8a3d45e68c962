import type { AddressInfo } from 'node:net'
import { serve, type Http2Bindings, type HttpBindings } from '@hono/node-server'
import { MemoryKeyStore } from '@saiku/fetch'
import { createHandler } from './app.ts'
import { demoPort, printDemo, seedDemoTenant } from './demo.ts'

// Node: the Fetch handler behind @hono/node-server's bridge, which passes Node's request and response beside it.
const store = new MemoryKeyStore()
const { key } = await seedDemoTenant(store)
const handler = createHandler<HttpBindings | Http2Bindings>(
  store,
  (_request, { incoming }) => incoming.socket.remoteAddress,
)
const server = serve({ fetch: handler, port: demoPort(process.env), hostname: '127.0.0.1' }, (info: AddressInfo) =>
  printDemo(`Node ${process.version}`, info.port, key),
)
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => server.close(() => process.exit(0)))
