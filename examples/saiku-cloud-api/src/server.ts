import { createServer } from 'node:http'
import { createKeyManager } from '@saiku/core'
import { createApp } from './app.js'
import { ConfigError, readConfig } from './config.js'
import { createLimiter } from './limits.js'
import { createLogger } from './logger.js'
import { openStore } from './store.js'
import { seedDemo } from './tenants.js'
import { createTokens } from './tokens.js'
import { openDashboardStore, readDashboardSettings } from './dashboard/index.js'
import { seedDemoMember } from './dashboard/members.js'

async function main(): Promise<void> {
  const config = readConfig()
  const logger = createLogger(config.logLevel)
  const opened = await openStore(config.databaseUrl)
  const limiter = await createLimiter(config.redisUrl, opened.store)
  const tokens = await createTokens()
  const dashboard = { store: await openDashboardStore(opened.store), settings: readDashboardSettings() }
  const { app, auth } = createApp({ store: opened.store, logger, limiter: limiter.options, tokens, dashboard })
  const demo = await seedDemo(opened.store, createKeyManager(opened.store))
  const demoMember = demo === null ? null : await seedDemoMember(dashboard.store, opened.store)

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
      if (demoMember !== null) {
        console.error(`Dashboard: ${url}/sign-in`)
        console.error(`  email:    ${demoMember.email}`)
        console.error(`  password: ${demoMember.password}\n`)
      }
    } else {
      console.error(`\nSaiku Cloud API on ${url} (${opened.description}). Mint a key with: pnpm saiku keys create --tenant acme --label my-key`)
      console.error(`Dashboard: ${url}/sign-in (add a member with: pnpm saiku members add --tenant acme --email you@example.com --role admin)\n`)
    }
  })

  let closing = false
  const shutdown = (signal: string) => {
    if (closing) return
    closing = true
    logger.info({ msg: 'shutting down', signal })
    server.close(() => {
      auth.authenticator.close()
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
