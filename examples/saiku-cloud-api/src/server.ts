import { createServer } from 'node:http'
import { createKeyManager } from '@saiku/core'
import { createApp } from './app.js'
import { ConfigError, readConfig } from './config.js'
import { createLimiter } from './limits.js'
import { createLogger } from './logger.js'
import { openStore } from './store.js'
import { seedDemo } from './tenants.js'
import { createTokens } from './tokens.js'

async function main(): Promise<void> {
  const config = readConfig()
  const logger = createLogger(config.logLevel)
  // Background store work (last-use writes, change polling) never throws: its failures are logged here.
  const opened = await openStore(config.databaseUrl, {
    onError: (error) => logger.error({ msg: 'store background failure', err: { name: error.name, message: error.message } }),
  })
  const limiter = await createLimiter(config.redisUrl, opened.store)
  const tokens = await createTokens()
  const { app, auth, close: closeApp } = createApp({ store: opened.store, logger, limiter: limiter.options, tokens })
  const demo = await seedDemo(opened.store, createKeyManager(opened.store))

  const server = createServer(app)
  server.listen(config.port, config.host, () => {
    const address = server.address()
    const url = `http://${config.host}:${typeof address === 'object' && address !== null ? address.port : config.port}`
    logger.info({ msg: 'listening', url, store: opened.description, limiter: limiter.description })
    // For the person at the terminal: the only time this key is ever shown.
    if (demo !== null) {
      console.error(`\nSaiku Cloud API on ${url}`)
      console.error(`Created demo tenant "acme" (starter, 14-day trial) and its first key. Copy it now; it is not shown again:`)
      console.error(`  ${demo.key}`)
      console.error(`Try:\n  curl ${url}/me/tenant -H "Authorization: Bearer ${demo.key}"\n`)
    } else {
      console.error(`\nSaiku Cloud API on ${url} (${opened.description}). Mint a key with: pnpm saiku keys create --tenant acme --label my-key\n`)
    }
  })

  let closing = false
  const shutdown = (signal: string) => {
    if (closing) return
    closing = true
    logger.info({ msg: 'shutting down', signal })
    server.close(() => {
      auth.authenticator.close()
      closeApp()
      void Promise.all([opened.close(), limiter.close()]).then(() => process.exit(0))
    })
    server.closeAllConnections()
  }
  process.on('SIGINT', () => shutdown('SIGINT'))
  process.on('SIGTERM', () => shutdown('SIGTERM'))
}

main().catch((error: unknown) => {
  console.error(error instanceof ConfigError ? `saiku: ${error.message}` : error)
  process.exit(1)
})
