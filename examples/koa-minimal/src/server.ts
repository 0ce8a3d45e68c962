import { createKeyManager } from '@saiku/core'
import { readConfig } from './config.js'
import { createLimiter } from './limits.js'
import { createLogger } from './logger.js'
import { openStore } from './store.js'
import { seedDemo } from './tenants.js'
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
