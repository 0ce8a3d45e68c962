import { createApp, demoStore } from './app.js'

const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? '127.0.0.1'

const { store, key } = await demoStore()
const server = createApp(store).listen(port, host, () => {
  const address = server.address()
  const url = `http://${host}:${typeof address === 'object' && address !== null ? address.port : port}`
  console.log(`Listening on ${url}. The demo key is shown only this once:`)
  console.log(`  curl ${url}/me/tenant -H "Authorization: Bearer ${key}"`)
})
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => server.close(() => process.exit(0)))
