import { createKeyManager } from '@saiku/core'
import { readConfig } from '@saiku/example-saiku-cloud-api/config'
import { openStore } from '@saiku/example-saiku-cloud-api/store'
import { seedDemo } from '@saiku/example-saiku-cloud-api/tenants'
import { createApp } from './app.js'

// Same DATABASE_URL, same data file as the Express reference server.
const config = readConfig()
const opened = await openStore(config.databaseUrl)
const { app } = createApp(opened.store)
const demo = await seedDemo(opened.store, createKeyManager(opened.store))
const server = app.listen(config.port, config.host, () => {
  const address = server.address()
  const url = `http://${config.host}:${typeof address === 'object' && address !== null ? address.port : config.port}`
  console.error(`Saiku Cloud API (Koa) on ${url}, ${opened.description}`)
  if (demo !== null) console.error(`Demo key for "acme", shown once:\n  curl ${url}/me/tenant -H "Authorization: Bearer ${demo.key}"`)
})
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => server.close(() => void opened.close().then(() => process.exit(0))))
}
