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
import { readSecretScanningConfig } from './secret-scanning.js'
import { secretScanningEvents } from './webhooks/events.js'
import { loadDashboardKey, openDashboardStore, readDashboardSettings } from './dashboard/index.js'
import { seedDemoMember } from './dashboard/members.js'
import { openWebhookSql } from './webhooks/sql.js'
import { createEndpointStore } from './webhooks/endpoints.js'
import { createWebhookDelivery } from './webhooks/delivery.js'
import { createEventQueue } from './webhooks/emitter.js'
import { startScheduler } from './webhooks/scheduler.js'
import { readWebhookSettings } from './webhooks/settings.js'

async function main(): Promise<void> {
  const config = { ...readConfig(), ...readOperationsConfig() }
  const tiers = readTierQuotas(process.env.TIER_QUOTAS)
  // Read now, so a bad URL stops the start-up; the keys themselves are fetched when the first alert arrives.
  const secretScanning = readSecretScanningConfig()
  const quotaFlushMs = readQuotaFlushMs(process.env.QUOTA_FLUSH_MS)
  const webhookSettings = readWebhookSettings()
  checkMetricsPort(config.port, config.metricsPort)
  const logs = createLogOutput(process.stdout)
  const logger = createLogger(config.logLevel, logs)
  // Background store work (last-use writes, change polling) never throws: its failures are logged here.
  const opened = await openStore(config.databaseUrl, {
    onError: (error) =>
      logger.error({ msg: 'store background failure', err: { name: error.name, message: error.message } }),
  })
  const limiter = await createLimiter(config.redisUrl, opened.store)
  // Webhooks: endpoints and deliveries beside the keys; the outbox the key writes fill is delivered from here.
  const webhookSql = await openWebhookSql(opened.store)
  const webhookFailure = (what: string) => (error: Error) =>
    logger.error({ msg: what, err: { name: error.name, message: error.message } })
  const webhooks = {
    endpoints: createEndpointStore(webhookSql, webhookSettings.policy),
    events: createEventQueue(webhookSql, Date.now, webhookFailure('webhook events not queued yet')),
  }
  const delivery = createWebhookDelivery({
    sql: webhookSql,
    policy: webhookSettings.policy,
    timeoutMs: webhookSettings.timeoutMs,
    onError: webhookFailure('webhook delivery round failed'),
  })
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
    webhooks,
    ...(metrics === null ? {} : { meterProvider: metrics.meterProvider }),
    ...(secretScanning === undefined
      ? {}
      : {
          secretScanning: {
            config: secretScanning,
            // The tenant hears of the leak through its webhooks: a revocation writes key.leaked in its own
            // transaction, a report on its own; both in the outbox before GitHub hears back.
            ...secretScanningEvents(opened.store),
          },
        }),
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
  delivery.start()
  webhooks.events.start()
  const scheduler = startScheduler(webhookSql, { onError: webhookFailure('webhook schedule sweep failed') })
  logger.info({
    msg: 'listening',
    url,
    store: opened.description,
    limiter: limiter.description,
    ...(quotas === null ? {} : { quotaCountsLoaded: quotas.loaded, quotaFlushMs }),
    reportOnlyLimits,
    corsOrigins: config.corsOrigins,
    secretScanning: secretScanning === undefined ? false : secretScanning.action,
  })
  showDemo()

  // SIGTERM (process managers, containers) and SIGINT (Ctrl-C): finish what is in flight, flush, close, exit.
  const shutdown = gracefulShutdown({
    server,
    logger,
    logs,
    timeoutMs: config.shutdownTimeoutMs,
    cleanup: async () => {
      closeApp()
      // The attempt under way ends (its outcome recorded); what is queued stays in the database for the next start.
      // An attempt longer than that is cut off here: its lease runs out and another start sends it again.
      await Promise.race([
        Promise.allSettled([delivery.stop(), webhooks.events.stop(), scheduler.stop()]),
        new Promise((resolve) => setTimeout(resolve, 2_000).unref()),
      ])
      try {
        quotas?.saver.stop()
        // Every write is tried, one failing or not: a database that refuses one may still take the others.
        const [uses, counts, history] = await Promise.allSettled([
          opened.flushKeyUses(),
          quotas?.saver.flush(),
          auth.authenticator.flushUsageHistory(),
        ])
        if (uses.status === 'rejected') throw uses.reason
        if (counts.status === 'rejected') throw counts.reason
        if (history.status === 'rejected') throw history.reason
        return {
          flushedKeyUses: uses.value,
          ...(quotas === null ? {} : { savedQuotaCounts: counts.value }),
          writtenUsageBuckets: history.value,
        }
      } finally {
        // After the last usage buckets were written: closing writes only what arrived since (none, the server being closed).
        auth.authenticator.close()
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
