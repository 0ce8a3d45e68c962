// One benchmark server, in its own process: `node server.js <variant>`.
// It prints {"port", "key"} once listening and answers {type:"cpu"} IPC messages
// with its own CPU time, so the runner measures server CPU per request.
import { createServer } from 'node:http'
import { build } from './apps.js'
import type { Variant } from './variants.js'

const built = await build(process.argv[2] as Variant)
const server = createServer(built.listener)
server.keepAliveTimeout = 60_000
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as { port: number }
  process.send!({ type: 'ready', port, key: built.key })
})
process.on('message', (message: { type: string }) => {
  if (message.type === 'cpu') {
    const { user, system } = process.cpuUsage()
    process.send!({ type: 'cpu', micros: user + system })
  } else if (message.type === 'stop') {
    built.close?.()
    server.close()
    server.closeAllConnections()
    process.exit(0)
  }
})
