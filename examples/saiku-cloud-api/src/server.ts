import { createServer } from 'node:http'
import { createKeyManager } from '@saiku/core'
import { createApp } from './app.js'
import { ConfigError, readConfig } from './config.js'
import { createLimiter } from './limits.js'
import { createLogger } from './logger.js'
import { startMetricsEndpoint } from './metrics.js'
import { readOperationsConfig } from './operations.js'
import { openStore } from './store.js'
import { gracefulShutdown } from './shutdown.js'
import { seedDemo } from './tenants.js'
import { createTokens } from './tokens.js'
import { openDashboardStore, readDashboardSettings } from './dashboard/index.js'
import { seedDemoMember } from './dashboard/members.js'

async function main(): Promise<void> {
  const config = { ...readConfig(), ...readOperationsConfig() }
  const logger = createLogger(config.logLevel)
  // Background store work (last-use writes, change polling) never throws: its failures are logged here.
  const opened = await openStore(config.databaseUrl, {
    onError: (error) =>
      logger.error({ msg: 'store background failure', err: { name: error.name, message: error.message } }),
  })
  const limiter = await createLimiter(config.redisUrl, opened.store)
  const tokens = await createTokens()
  const dashboard = { store: await openDashboardStore(opened.store), settings: readDashboardSettings() }
  const metrics =
    config.metricsPort === undefined ? null : await startMetricsEndpoint(config.metricsPort, config.metricsHost)
  if (metrics !== null) logger.info({ msg: 'metrics listening', url: metrics.url })
  const {
    app,
    auth,
    close: closeApp,
  } = createApp({
    store: opened.store,
    logger,
    limiter: limiter.options,
    tokens,
    dashboard,
    reportOnlyLimits: config.reportOnlyLimits,
    ...(metrics === null ? {} : { meterProvider: metrics.meterProvider }),
  })
  const server = createServer(app)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(config.port, config.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  // The demo is seeded only once the port is ours: a start that cannot listen creates
  // no key or password it never gets to show (the store keeps only their digests).
  const demo = await seedDemo(opened.store, createKeyManager(opened.store))
  const demoMember = demo === null ? null : await seedDemoMember(dashboard.store, opened.store)
  const address = server.address()
  const url = `http://${config.host}:${typeof address === 'object' && address !== null ? address.port : config.port}`
  logger.info({
    msg: 'listening',
    url,
    store: opened.description,
    limiter: limiter.description,
    reportOnlyLimits: config.reportOnlyLimits,
  })
  // For the person at the terminal: the only time this key is ever shown.
  if (demo !== null) {
    console.error(`\nSaiku Cloud API on ${url}`)
    console.error(
      `Created demo tenant "acme" (starter, 14-day trial) and its first key. Copy it now; it is not shown again:`,
    )
    console.error(`  ${demo.key}`)
    console.error(`Try:\n  curl ${url}/me/tenant -H "Authorization: Bearer ${demo.key}"\n`)
    if (demoMember !== null) {
      console.error(`Dashboard: ${url}/sign-in`)
      console.error(`  email:    ${demoMember.email}`)
      console.error(`  password: ${demoMember.password}\n`)
    }
  } else {
    console.error(
      `\nSaiku Cloud API on ${url} (${opened.description}). Mint a key with: pnpm saiku keys create --tenant acme --label my-key`,
    )
    console.error(
      `Dashboard: ${url}/sign-in (add a member with: pnpm saiku members add --tenant acme --email you@example.com --role admin)\n`,
    )
  }

  // SIGTERM (process managers, containers) and SIGINT (Ctrl-C): finish what is in flight, flush, close, exit.
  const shutdown = gracefulShutdown({
    server,
    logger,
    timeoutMs: config.shutdownTimeoutMs,
    cleanup: async () => {
      auth.authenticator.close()
      closeApp()
      try {
        return { flushedKeyUses: await opened.flushKeyUses() }
      } finally {
        // Redis clients and their change feed, then the store's own feed (polling, LISTEN), the store and its pool.
        await limiter.close()
        await opened.close()
        await metrics?.close()
      }
    },
  })
  process.on('SIGINT', () => shutdown.stop('SIGINT'))
  process.on('SIGTERM', () => shutdown.stop('SIGTERM'))
}

main().catch((error: unknown) => {
  console.error(error instanceof ConfigError ? `saiku: ${error.message}` : error)
  process.exit(1)
})
