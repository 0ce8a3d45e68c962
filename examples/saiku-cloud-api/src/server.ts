import { createServer, type RequestListener } from 'node:http'
import { createKeyManager, DEFAULT_TIERS, SaikuConfigError } from '@saiku/core'
import { createApp } from './app.js'
import { ConfigError, DEFAULT_DATA_DIR, readConfig } from './config.js'
import { createLimiter } from './limits.js'
import { createLogger, createLogOutput } from './logger.js'
import { startMetricsEndpoint } from './metrics.js'
import { checkMetricsPort, readOperationsConfig, resolveReportOnlyLimits } from './operations.js'
import { openStore } from './store.js'
import { keepQuotaCounts, oneOfSeveralProcesses, readQuotaFlushMs, readTierQuotas } from './quota-counts.js'
import { gracefulShutdown } from './shutdown.js'
import { seedDemo } from './tenants.js'
import { createTokens } from './tokens.js'
import { loadDashboardKey, openDashboardStore, readDashboardSettings } from './dashboard/index.js'
import { seedDemoMember } from './dashboard/members.js'

async function main(): Promise<void> {
  const config = { ...readConfig(), ...readOperationsConfig() }
  const tiers = readTierQuotas(process.env.TIER_QUOTAS)
  const quotaFlushMs = readQuotaFlushMs(process.env.QUOTA_FLUSH_MS)
  checkMetricsPort(config.port, config.metricsPort)
  const logs = createLogOutput(process.stdout)
  const logger = createLogger(config.logLevel, logs)
  // Background store work (last-use writes, change polling) never throws: its failures are logged here.
  const opened = await openStore(config.databaseUrl, {
    onError: (error) =>
      logger.error({ msg: 'store background failure', err: { name: error.name, message: error.message } }),
  })
  const limiter = await createLimiter(config.redisUrl, opened.store)
  if (limiter.memory !== null && oneOfSeveralProcesses())
    logger.warn({
      msg: 'limits counted per process',
      detail:
        'Without REDIS_URL each process counts its own minute, hour, day and month: with several, each admits the whole limit and quota. Set REDIS_URL to count them once.',
    })
  const tokens = await createTokens()
  const dashboard = {
    store: await openDashboardStore(opened.store),
    settings: readDashboardSettings(),
    // Beside the token signing key: every process sharing the data folder signs the sign-in cookies alike.
    key: loadDashboardKey(process.env.SAIKU_DATA_DIR || DEFAULT_DATA_DIR),
  }
  const metrics =
    config.metricsPort === undefined
      ? null
      : await startMetricsEndpoint(config.metricsPort, config.metricsHost).catch((error: unknown) => {
          throw listenError('METRICS_PORT', config.metricsHost, config.metricsPort!, error)
        })
  if (metrics !== null) logger.info({ msg: 'metrics listening', url: metrics.url })
  if (metrics !== null) limiter.observeBatches(metrics.meterProvider)
  // Listening before anything is seeded: a start that cannot have its port creates no demo key or password it
  // would never get to show (the store keeps only their digests). Until the app is ready, requests get a 503.
  let handle: RequestListener = (_req, res) => {
    res.writeHead(503, { 'content-type': 'application/json; charset=utf-8', 'retry-after': '1' })
    res.end(JSON.stringify({ error: 'service_unavailable', message: 'The server is starting. Try again in a moment.' }))
  }
  const server = createServer((req, res) => handle(req, res))
  await new Promise<void>((resolve, reject) => {
    // A port in use is a setting to change, said in one line like the others.
    const onListenError = (error: Error) => reject(listenError('PORT', config.host, config.port, error))
    server.once('error', onListenError)
    server.listen(config.port, config.host, () => {
      server.off('error', onListenError)
      resolve()
    })
  })
  const address = server.address()
  const url = `http://${config.host}:${typeof address === 'object' && address !== null ? address.port : config.port}`
  // Before the report-only tenants are resolved: `tenant:acme` may name the demo tenant of a fresh store.
  const demo = await seedDemo(opened.store, createKeyManager(opened.store))
  const demoMember = demo === null ? null : await seedDemoMember(dashboard.store, opened.store)
  // The demo key's printed once, by the start that made it.
  const showDemo = (): void => {
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
  }
  const reportOnlyLimits = await resolveReportOnlyLimits(
    config.reportOnlyLimits,
    Object.keys(DEFAULT_TIERS),
    opened.store,
  )
  const {
    app,
    auth,
    close: closeApp,
  } = createApp({
    store: opened.store,
    logger,
    limiter: limiter.options,
    ...(tiers === undefined ? {} : { tiers }),
    tokens,
    dashboard,
    reportOnlyLimits,
    corsOrigins: config.corsOrigins,
    ...(metrics === null ? {} : { meterProvider: metrics.meterProvider }),
  })
  // Before the first request is counted: a restart does not give a tenant its day or month back.
  const quotas =
    limiter.memory === null
      ? null
      : await keepQuotaCounts(opened.store, limiter.memory, {
          flushMs: quotaFlushMs,
          onError: (error) =>
            logger.error({ msg: 'quota counts not saved', err: { name: error.name, message: error.message } }),
        })
  handle = app
  logger.info({
    msg: 'listening',
    url,
    store: opened.description,
    limiter: limiter.description,
    ...(quotas === null ? {} : { quotaCountsLoaded: quotas.loaded, quotaFlushMs }),
    reportOnlyLimits,
    corsOrigins: config.corsOrigins,
  })
  showDemo()

  // SIGTERM (process managers, containers) and SIGINT (Ctrl-C): finish what is in flight, flush, close, exit.
  const shutdown = gracefulShutdown({
    server,
    logger,
    logs,
    timeoutMs: config.shutdownTimeoutMs,
    cleanup: async () => {
      auth.authenticator.close()
      closeApp()
      try {
        quotas?.saver.stop()
        // Both writes are tried, one failing or not: a database that refuses one may still take the other.
        const [uses, counts] = await Promise.allSettled([opened.flushKeyUses(), quotas?.saver.flush()])
        if (uses.status === 'rejected') throw uses.reason
        if (counts.status === 'rejected') throw counts.reason
        return { flushedKeyUses: uses.value, ...(quotas === null ? {} : { savedQuotaCounts: counts.value }) }
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

/** A listen that failed (EADDRINUSE, EACCES, EADDRNOTAVAIL), as a one-line start-up error naming the setting. */
function listenError(setting: string, host: string, port: number, error: unknown): ConfigError {
  const code = (error as NodeJS.ErrnoException).code ?? String(error)
  const reason = code === 'EADDRINUSE' ? 'the port is in use' : code === 'EACCES' ? 'permission denied' : code
  return new ConfigError(`${setting}: cannot listen on ${host}:${port} (${reason})`)
}

/** A setting that stops the start-up is one line on stderr, never a stack trace; anything else is shown whole. */
function stopStarting(error: unknown): never {
  const oneLine = error instanceof ConfigError || error instanceof SaikuConfigError
  console.error(oneLine ? `saiku: ${error.message}` : error)
  process.exit(1)
}

main().catch(stopStarting)
