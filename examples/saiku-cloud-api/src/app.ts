import cors from 'cors'
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express'
import type { Logger } from 'pino'
import type { MeterProvider } from '@opentelemetry/api'
import {
  requirePermission,
  saikuAuth,
  saikuErrors,
  SaikuHttpError,
  type SaikuMiddleware,
  type SaikuOptions,
} from '@saiku/express'
import { reportedPath, SaikuStoreError, usageFromDecision, type TenantAdminStore } from '@saiku/core'
import {
  bodyFields,
  createKey,
  exchangeToken,
  getBilling,
  getUsageHistory,
  listKeys,
  postPlan,
  revokeKey,
  rotateKey,
  startTrial,
  updateKey,
  type ApiResult,
} from './api.js'
import {
  cancelAtPeriodEnd,
  settleDueSubscriptions,
  SETTLE_INTERVAL_MS,
  undoCancel,
  type BillingResult,
  type SettlementRecorder,
} from './billing.js'
import type { TokenSetup } from './tokens.js'
import { openApiDocument } from './openapi.js'
import { createRefusalLog } from './refusals.js'
import { routeCost } from './costs.js'
import { createDashboard, recordApiAction, recordSettlement } from './dashboard/index.js'
import type { DashboardStore } from './dashboard/store/index.js'
import type { DashboardSettings } from './dashboard/settings.js'
import {
  checkSecretScanningOptions,
  createSecretScanningRoute,
  SECRET_SCANNING_ACTOR,
  type SecretScanningOptions,
} from './secret-scanning.js'
import { registerWebhookRoutes } from './webhooks/express.js'
import type { EndpointStore } from './webhooks/endpoints.js'
import { createRateLimitWatch, queueQuotaThresholds, type EventQueue } from './webhooks/emitter.js'

export interface AppOptions {
  readonly store: TenantAdminStore
  /** Token exchange and the JWKS; without it the server accepts API keys only. */
  readonly tokens?: TokenSetup
  readonly logger: Logger
  readonly limiter?: SaikuOptions['limiter']
  /** Tier overrides (TIER_QUOTAS: the built-in tiers with day and month quotas). Default: the spec's tiers. */
  readonly tiers?: SaikuOptions['tiers']
  readonly cacheTtlMs?: number
  /** Where the authenticator's metrics go (the Prometheus endpoint's provider). Default: the global one. */
  readonly meterProvider?: MeterProvider
  /** Whose limits are reported (`onDecision`, the refusal log) but not enforced. Default: none. */
  readonly reportOnlyLimits?: NonNullable<SaikuOptions['reportOnly']>['limits']
  /** Usage over time (the store keeps it): `usageHistory` of the authenticator. Default true: every 5 s, 90 days kept. */
  readonly usageHistory?: SaikuOptions['usageHistory']
  /** How often repeated refusals are summed up in the log. Default 10000. */
  readonly refusalLogIntervalMs?: number
  /**
   * Origins whose scripts may call the bearer routes under /me with their users' tokens
   * (CORS_ORIGINS), exactly as browsers send them. Default: none.
   */
  readonly corsOrigins?: readonly string[]
  /** The dashboard's pages, sessions and activity log; without it the server is the JSON API alone. */
  /** The clock of billing periods and plan changes. Default: `Date.now`. */
  readonly now?: () => number
  /** How often the downgrades and cancellations whose period ended are applied; 0: only when billing is read. Default 60000. */
  readonly settleIntervalMs?: number
  /**
   * GitHub's secret scanning alerts, POST /secret-scanning/github (GITHUB_SECRET_SCANNING_KEYS_URL); without it
   * the route does not exist. `onLeaked` announces each leak to its tenant (the `key.leaked` event).
   */
  readonly secretScanning?: Omit<SecretScanningOptions, 'store' | 'keys' | 'logger' | 'activity'>
  /** A tenant's webhook endpoints and their delivery log (/me/webhooks); without it those routes are 404. */
  readonly webhooks?: {
    readonly endpoints: EndpointStore
    /** Where `quota.threshold` and `rate_limit.exceeded` are queued; without it they are not sent. */
    readonly events?: EventQueue
  }
  readonly dashboard?: {
    readonly store: DashboardStore
    readonly settings: DashboardSettings
    /** Signs the sign-in form's tokens and the device cookies; default a random key per process. */
    readonly key?: Buffer
  }
}

/** Sends an ApiResult; errors go to the error handler as the JSON body. */
/**
 * Whether an event of this key is the first in `intervalMs`: at most one Activity line per key per
 * interval, in at most `maxKeys` entries (the oldest go first), so a flood of keys cannot grow it.
 */
export function createOncePerKey(
  intervalMs: number,
  maxKeys: number,
): { first(keyId: string, nowMs: number): boolean } {
  const last = new Map<string, number>()
  return {
    first(keyId, nowMs) {
      const seen = last.get(keyId)
      if (seen !== undefined && nowMs - seen < intervalMs && nowMs >= seen) return false
      last.delete(keyId)
      if (last.size >= maxKeys) last.delete(last.keys().next().value!)
      last.set(keyId, nowMs)
      return true
    },
  }
}

function route(handler: (req: Request) => Promise<ApiResult>): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    handler(req).then((result) => {
      if (result.body === undefined) res.status(result.status).end()
      else res.status(result.status).json(result.body)
    }, next)
  }
}

/** A route that takes no fields: no body, or `{}`; anything else is a 400 like an unknown field. */
function routeWithoutBody(handler: (req: Request) => Promise<ApiResult>): RequestHandler {
  return route(async (req) => {
    bodyFields(req.body, [], false)
    return handler(req)
  })
}

function methodNotAllowed(allowed: string[]): RequestHandler {
  const allow = allowed.join(', ')
  return (_req, res) => {
    res.setHeader('allow', allow)
    throw new SaikuHttpError('method_not_allowed', `Use ${allow} on this resource.`)
  }
}

/** Whether the request carries a body, however it is framed: a non-zero Content-Length, or chunked (Transfer-Encoding). */
function hasBody(req: Request): boolean {
  const length = req.headers['content-length']
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

/**
 * Every route that reads a body reads it the same way: a body, when there is one,
 * must be application/json (else 415, never silently read as empty), at most
 * 16 KiB (413), valid JSON (400); the route then refuses unknown fields (400).
 */
const jsonBody: RequestHandler[] = [
  (req, _res, next) => {
    if (hasBody(req) && req.is('application/json') !== 'application/json') {
      throw new SaikuHttpError('unsupported_media_type', 'Send the body as application/json.')
    }
    next()
  },
  express.json({ limit: '16kb' }),
]

/** The token exchange takes an API key, which never belongs in a browser: no origin's script may call it. */
const TOKEN_EXCHANGE = /^\/tokens(?:\/|$)/i

/**
 * CORS for the bearer routes below /me, mounted there before authentication so a preflight is
 * answered (204) before a key is asked for: exact origins only, never credentials (the routes
 * read a bearer token, never a cookie), the rate-limit fields readable from scripts.
 */
function bearerRoutesCors(origins: readonly string[]): RequestHandler {
  const allow = cors({
    origin: [...origins],
    methods: ['GET', 'POST', 'DELETE'],
    allowedHeaders: ['Authorization', 'Content-Type'],
    exposedHeaders: ['RateLimit', 'RateLimit-Policy', 'Retry-After'],
    credentials: false,
    maxAge: 600,
  })
  // req.path is below the /me mount point; Express routes in any case and with a trailing slash, so the test does too.
  return (req, res, next) => (TOKEN_EXCHANGE.test(req.path) ? next() : allow(req, res, next))
}

type Audit = ReturnType<typeof recordApiAction>

/**
 * The Billing API's changes: plan, cancellation at period end and its undo. Each is recorded in
 * Activity when it changed something. A timer applies the changes whose period has ended (every
 * process runs it; the conditional write applies each once). Returns what stops the timer.
 */
function registerBillingChanges(
  app: express.Express,
  store: TenantAdminStore,
  options: {
    audit: Audit | undefined
    settled: SettlementRecorder | undefined
    logger: Logger
    now: () => number
    settleIntervalMs: number | undefined
  },
): () => void {
  const { audit, settled, now } = options
  const recorded =
    (handler: (req: Request) => Promise<BillingResult>) =>
    async (req: Request): Promise<ApiResult> => {
      const result = await handler(req)
      if (result.activity !== undefined)
        audit?.({
          tenantId: req.saiku!.tenant.tenantId,
          keyId: req.saiku!.credential.keyId,
          action: result.activity.action,
          target: result.activity.target,
          ip: req.ip,
        })
      return { status: result.status, body: result.body }
    }
  app
    .route('/me/billing/plan')
    .post(
      requirePermission('billing:write'),
      jsonBody,
      route(recorded((req) => postPlan(store, req.saiku!, req.body, now(), settled))),
    )
    .all(methodNotAllowed(['POST']))
  app
    .route('/me/billing/cancel')
    .post(
      requirePermission('billing:write'),
      jsonBody,
      routeWithoutBody(recorded((req) => cancelAtPeriodEnd(store, req.saiku!.tenant.tenantId, now(), settled))),
    )
    .delete(
      requirePermission('billing:write'),
      jsonBody,
      routeWithoutBody(recorded((req) => undoCancel(store, req.saiku!.tenant.tenantId, now(), settled))),
    )
    .all(methodNotAllowed(['POST', 'DELETE']))
  const intervalMs = options.settleIntervalMs ?? SETTLE_INTERVAL_MS
  if (intervalMs === 0) return () => {}
  const timer = setInterval(() => {
    // A failed sweep is tried again at the next tick; a billing read applies a due change meanwhile.
    settleDueSubscriptions(store, now(), settled).catch((error: unknown) =>
      options.logger.error({ msg: 'billing settlement failed', err: { message: (error as Error).message } }),
    )
  }, intervalMs)
  timer.unref()
  return () => clearInterval(timer)
}

/** Logs one line per request when it finishes: method, path without the query, status, tenant, key ID. */
function requestLog(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint()
    res.on('finish', () => {
      // A request the middleware refused is in the refusal log, summed up when repeated.
      if (req.saiku === undefined && res.statusCode >= 400 && res.statusCode !== 404) return
      logger.info({
        msg: 'request',
        method: req.method,
        path: reportedPath(req.originalUrl),
        status: res.statusCode,
        durationMs: Number(process.hrtime.bigint() - started) / 1e6,
        tenantId: req.saiku?.tenant.tenantId ?? null,
        keyId: req.saiku?.credential.keyId ?? null,
      })
    })
    next()
  }
}

export function createApp(options: AppOptions): { app: express.Express; auth: SaikuMiddleware; close: () => void } {
  const { store, logger } = options
  // Before anything starts: a bad option leaves no timer running.
  if (options.secretScanning !== undefined) checkSecretScanningOptions(options.secretScanning)
  const now = options.now ?? Date.now
  const refusals = createRefusalLog(logger, { intervalMs: options.refusalLogIntervalMs })
  const app = express()
  app.disable('x-powered-by')
  app.use(requestLog(logger))
  // Public documents: another method is a 405 here too, before any key is asked for.
  app
    .route('/openapi.json')
    .get((_req, res) => res.json(openApiDocument))
    .all(methodNotAllowed(['GET']))
  // For load balancers and orchestrators, which hold no key: answered before authentication, so never counted.
  app
    .route('/healthz')
    .get((_req, res) => res.set('cache-control', 'no-store').json({ status: 'ok' }))
    .all(methodNotAllowed(['GET']))
  const { tokens } = options
  if (tokens !== undefined) {
    app
      .route('/.well-known/jwks.json')
      .get((_req, res) => res.json(tokens.issuer.jwks()))
      .all(methodNotAllowed(['GET']))
  }

  // The Activity log of what API keys do, when there is a dashboard; a refused address is recorded through it too.
  const audit = options.dashboard === undefined ? undefined : recordApiAction(options.dashboard.store, logger)
  // A downgrade or cancellation that a period end applied, recorded by the read or sweep that applied it.
  const settled = options.dashboard === undefined ? undefined : recordSettlement(options.dashboard.store, logger)
  const addressRefusals = createOncePerKey(60_000, 10_000)
  const webhookEvents = options.webhooks?.events
  const rateLimitWatch = webhookEvents === undefined ? undefined : createRateLimitWatch(webhookEvents, now)
  const authOptions: SaikuOptions = {
    subscription: { exemptPaths: ['/me/billing'] },
    cost: routeCost,
    ...(tokens === undefined ? {} : { jwt: tokens.verifier }),
    ...(options.limiter === undefined ? {} : { limiter: options.limiter }),
    ...(options.tiers === undefined ? {} : { tiers: options.tiers }),
    ...(options.cacheTtlMs === undefined ? {} : { cache: { ttlMs: options.cacheTtlMs } }),
    ...(options.reportOnlyLimits === undefined ? {} : { reportOnly: { limits: options.reportOnlyLimits } }),
    ...(options.meterProvider === undefined ? {} : { metrics: { meterProvider: options.meterProvider } }),
    usageHistory: options.usageHistory ?? true,
    onDecision: (event) => {
      if (event.status >= 400) refusals.record(event)
      // Queued in memory: a decision never waits on a webhook.
      rateLimitWatch?.onDecision(event)
      if (event.reason === 'address_not_allowed' && event.keyId !== null && event.tenantId !== null) {
        if (addressRefusals.first(event.keyId, Date.now()))
          audit?.({
            tenantId: event.tenantId,
            keyId: event.keyId,
            action: 'key.address_refused',
            target: event.keyId,
            ip: event.ip,
          })
      }
    },
    onError: (error) => logger.error({ msg: 'store failure', err: { name: error.name, message: error.message } }),
  }
  const auth = saikuAuth(store, authOptions)
  const keys = auth.authenticator.keys
  // Unauthenticated like the sign-in page, with its own budget per address; before the dashboard and the API keys.
  if (options.secretScanning !== undefined) {
    const activityStore = options.dashboard?.store
    app.use(
      createSecretScanningRoute({
        ...options.secretScanning,
        store,
        keys,
        logger,
        ...(activityStore === undefined
          ? {}
          : {
              activity: {
                record: (activity, at) =>
                  activityStore.recordActivity({
                    tenantId: activity.tenantId,
                    actorType: 'system',
                    actor: SECRET_SCANNING_ACTOR,
                    action: activity.action,
                    target: activity.target,
                    ip: activity.ip,
                    at,
                  }),
                alreadyRecorded: (activity) =>
                  activityStore.hasActivity(activity.tenantId, activity.action, activity.target),
              },
            }),
      }),
    )
  }
  // The dashboard's pages come first: they answer to a session cookie, never to an API key.
  const dashboard = options.dashboard
  if (dashboard !== undefined) {
    app.set('trust proxy', dashboard.settings.trustProxy)
    app.use(
      createDashboard({
        store,
        dashboard: dashboard.store,
        authenticator: auth.authenticator,
        logger,
        settings: dashboard.settings,
        ...(dashboard.key === undefined ? {} : { key: dashboard.key }),
        ...(options.webhooks === undefined ? {} : { webhooks: options.webhooks.endpoints }),
      }),
    )
  }
  /** Records a successful API action in the Activity log. */
  const recorded =
    (
      action: string,
      target: (req: Request, result: ApiResult) => string | null,
      handler: (req: Request) => Promise<ApiResult>,
    ) =>
    async (req: Request): Promise<ApiResult> => {
      const result = await handler(req)
      // Only what happened: a refused or unknown target (4xx) changed nothing.
      if (result.status < 300)
        audit?.({
          tenantId: req.saiku!.tenant.tenantId,
          keyId: req.saiku!.credential.keyId,
          action,
          target: target(req, result),
          ip: req.ip,
        })
      return result
    }
  if (options.corsOrigins !== undefined && options.corsOrigins.length > 0)
    app.use('/me', bearerRoutesCors(options.corsOrigins))
  app.use(auth)
  if (webhookEvents !== undefined)
    app.use((req, _res, next) => {
      const rateLimit = req.saiku?.rateLimit
      if (rateLimit != null) queueQuotaThresholds(webhookEvents, req.saiku!.tenant.tenantId, rateLimit, now())
      next()
    })

  app
    .route('/me/usage')
    .get((req, res) => {
      const { tenant, limits, rateLimit } = req.saiku!
      // GET /me/usage costs 0 (routeCost): the counts were read, not spent. Null when that read failed.
      if (rateLimit === null)
        throw new SaikuHttpError('service_unavailable', 'Usage is unavailable while the rate limiter is.')
      res.json(usageFromDecision(tenant.tenantId, limits, rateLimit))
    })
    .all(methodNotAllowed(['GET']))
  app
    .route('/me/usage/history')
    .get(route((req) => getUsageHistory(auth.authenticator, req.saiku!, req.query, now())))
    .all(methodNotAllowed(['GET']))

  app
    .route('/me/tenant')
    .get((req, res) => res.json(req.saiku!.tenant))
    .all(methodNotAllowed(['GET']))
  app
    .route('/me/api-keys')
    .get(
      requirePermission('keys:read'),
      route((req) => listKeys(keys, req.saiku!)),
    )
    .post(
      requirePermission('keys:write'),
      jsonBody,
      route(
        recorded(
          'key.created',
          (_req, result) => (result.body as { keyId: string }).keyId,
          (req) => createKey(keys, req.saiku!, req.body),
        ),
      ),
    )
    .all(methodNotAllowed(['GET', 'POST']))
  app
    .route('/me/api-keys/:keyId')
    .delete(
      requirePermission('keys:write'),
      jsonBody,
      routeWithoutBody(
        recorded(
          'key.revoked',
          (req) => String(req.params.keyId),
          (req) => revokeKey(keys, req.saiku!, String(req.params.keyId)),
        ),
      ),
    )
    .patch(
      requirePermission('keys:write'),
      jsonBody,
      route(
        recorded(
          'key.updated',
          (req) => String(req.params.keyId),
          (req) => updateKey(keys, req.saiku!, String(req.params.keyId), req.body),
        ),
      ),
    )
    .all(methodNotAllowed(['PATCH', 'DELETE']))
  app
    .route('/me/api-keys/:keyId/rotate')
    .post(
      requirePermission('keys:write'),
      jsonBody,
      route(
        recorded(
          'key.rotated',
          // Both keys: the one replaced, then its successor.
          (req, result) => `${String(req.params.keyId)} → ${(result.body as { keyId: string }).keyId}`,
          (req) => rotateKey(keys, req.saiku!, String(req.params.keyId), req.body),
        ),
      ),
    )
    .all(methodNotAllowed(['POST']))
  app
    .route('/me/billing')
    .get(route((req) => getBilling(store, req.saiku!, now(), settled)))
    .all(methodNotAllowed(['GET']))
  app
    .route('/me/billing/trial')
    .post(
      requirePermission('billing:write'),
      jsonBody,
      routeWithoutBody(
        recorded(
          'trial.started',
          () => null,
          (req) => startTrial(store, req.saiku!, now(), settled),
        ),
      ),
    )
    .all(methodNotAllowed(['POST']))
  const stopSettling = registerBillingChanges(app, store, {
    audit,
    settled,
    logger,
    now,
    settleIntervalMs: options.settleIntervalMs,
  })

  if (options.webhooks !== undefined)
    registerWebhookRoutes(app, options.webhooks.endpoints, {
      jsonBody,
      route,
      routeWithoutBody,
      methodNotAllowed,
      recorded,
    })

  if (tokens !== undefined) {
    app
      .route('/me/tokens')
      .post(
        jsonBody,
        route((req) => exchangeToken(tokens.issuer, req.saiku!, req.body)),
      )
      .all(methodNotAllowed(['POST']))
  }

  app.use(
    saikuErrors({
      onError: (error) => {
        // A store failure is answered with 503 and reported like the middleware's, without a stack.
        if (error instanceof SaikuStoreError)
          logger.error({ msg: 'store failure', err: { name: error.name, message: error.message } })
        else
          logger.error({
            msg: 'unhandled error',
            err:
              error instanceof Error ? { name: error.name, message: error.message, stack: error.stack } : String(error),
          })
      },
    }),
  )
  return {
    app,
    auth,
    close: () => {
      refusals.close()
      stopSettling()
    },
  }
}
