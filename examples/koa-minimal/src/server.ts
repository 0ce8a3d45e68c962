import { createKeyManager } from '@saiku/core'
import { readConfig } from '@saiku/example-saiku-cloud-api/config'
import { createLimiter } from '@saiku/example-saiku-cloud-api/limits'
import { createLogger } from '@saiku/example-saiku-cloud-api/logger'
import { openStore } from '@saiku/example-saiku-cloud-api/store'
import { seedDemo } from '@saiku/example-saiku-cloud-api/tenants'
import { createApp } from './app.js'

// Same configuration, store and limiter as the Express reference server.
const config = readConfig()
const logger = createLogger(config.logLevel)
const opened = await openStore(config.databaseUrl)
const limiter = await createLimiter(config.redisUrl, opened.store)
const { app, auth } = createApp(opened.store, { limiter: limiter.options })
const demo = await seedDemo(opened.store, createKeyManager(opened.store))
const server = app.listen(config.port, config.host, () => {
  const address = server.address()
  const url = `http://${config.host}:${typeof address === 'object' && address !== null ? address.port : config.port}`
  logger.info({ msg: 'listening', url, store: opened.description, limiter: limiter.description, framework: 'koa' })
  if (demo !== null) console.error(`Demo key for "acme", shown once:\n  curl ${url}/me/tenant -H "Authorization: Bearer ${demo.key}"`)
})
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    server.close(() => {
      auth.authenticator.close()
      void Promise.all([opened.close(), limiter.close()]).then(() => process.exit(0))
    })
    server.closeAllConnections()
  })
}
