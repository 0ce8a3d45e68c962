// The servers the benchmark compares, as request listeners: the HTTP runner serves
// them from their own processes, the in-process measure calls them directly.
import { createHash } from 'node:crypto'
import { createServer, IncomingMessage, ServerResponse, type RequestListener } from 'node:http'
import { Socket } from 'node:net'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { getHeapStatistics } from 'node:v8'
import express from 'express'
import Fastify, { type FastifyInstance } from 'fastify'
import { getRequestListener } from '@hono/node-server'
import { getConnInfo } from '@hono/node-server/conninfo'
import { Hono, type MiddlewareHandler } from 'hono'
import rateLimit from 'express-rate-limit'
import Koa from 'koa'
import passport from 'passport'
import { Strategy as BearerStrategy } from 'passport-http-bearer'
import { Redis } from 'ioredis'
import { createKeyManager, MemoryKeyStore, mintApiKey, type SaikuOptions } from '@saiku/core'
import type { AuthDecision } from '@saiku/core/adapter'
import { saikuAuth as saikuExpress } from '@saiku/express'
import { saikuAuth as saikuFastify } from '@saiku/fastify'
import { saikuAuth as saikuHono, type SaikuEnv } from '@saiku/fetch/hono'
import { saikuAuth as saikuKoa } from '@saiku/koa'
import { createRedisLimiter } from '@saiku/redis'
import { createFloor, createHashingFloor, FLOOR_REFUSALS, type FloorAdmitted, type FloorCheck } from './floor.js'
import { BENCH_TIERS, TENANT, type FLOORS, type Variant } from './variants.js'

export interface BuiltApp {
  readonly listener: RequestListener
  /** The bearer key the app admits ('none' for a bare framework). */
  readonly key: string
  readonly close?: () => void
  /** Koa's handler: a promise that settles once the response is written (the listener drops it). */
  readonly handle?: (req: IncomingMessage, res: ServerResponse) => Promise<unknown>
}

const body = () => JSON.stringify(TENANT)

const socket = new Socket()
const authorizationOf = new WeakMap<BuiltApp, string>()

/** One request through the app without a socket, as the in-process measures make it; the status it answered. */
export async function serveInProcess(app: BuiltApp): Promise<number> {
  let authorization = authorizationOf.get(app)
  if (authorization === undefined) {
    // Flat, as Node's parser hands a header value (a template literal would make a concatenation each request).
    authorization = Buffer.from(`Bearer ${app.key}`, 'latin1').toString('latin1')
    authorizationOf.set(app, authorization)
  }
  const req = new IncomingMessage(socket)
  req.method = 'GET'
  req.url = '/me/tenant'
  req.httpVersion = '1.1'
  req.headers = { host: '127.0.0.1', authorization, accept: '*/*' }
  req.rawHeaders = ['Host', '127.0.0.1', 'Authorization', authorization, 'Accept', '*/*']
  req.complete = true
  const res = new ServerResponse(req)
  if (app.handle !== undefined) await app.handle(req, res)
  else app.listener(req, res)
  // Express answers in the same turn unless something awaited; then wait for the end.
  while (!res.writableEnded) await nextTurn()
  return res.statusCode
}

/** What a batch of requests cost: CPU µs of the whole process and bytes the heap grew by, each per request. */
export interface BatchCost {
  readonly cpuMicros: number
  /** Less than what was allocated when a collection ran during the batch (possibly negative). */
  readonly bytes: number
}

/** `requests` requests through the app, each answered 200 (else throws, naming `what`): what they cost. */
export async function serveBatch(app: BuiltApp, requests: number, what: string): Promise<BatchCost> {
  const heapBefore = getHeapStatistics().used_heap_size
  const before = process.cpuUsage()
  for (let i = 0; i < requests; i++) {
    const status = await serveInProcess(app)
    if (status !== 200) throw new Error(`${what}: answered ${status}, not 200`)
  }
  const used = process.cpuUsage(before)
  return {
    cpuMicros: (used.user + used.system) / requests,
    bytes: (getHeapStatistics().used_heap_size - heapBefore) / requests,
  }
}

async function saikuStore(): Promise<{ store: MemoryKeyStore; key: string }> {
  const store = new MemoryKeyStore({ tiers: { ...BENCH_TIERS, starter: { perMinute: 60, perHour: 1000 } } })
  store.putTenant({ ...TENANT, subscription: { status: 'active' } })
  const { key } = await createKeyManager(store).create(TENANT.tenantId, { label: 'bench' })
  return { store, key }
}

/** An Express app with the floor as its middleware, then the handler. */
function expressFloor(admit: FloorCheck): express.Express {
  const app = express()
  app.use((req, res, next) => {
    const admitted = admit(req.headers.authorization)
    if (typeof admitted === 'number') {
      res.status(admitted).type('json').send(FLOOR_REFUSALS[admitted])
      return
    }
    res.setHeader('ratelimit-policy', admitted.policy)
    res.setHeader('ratelimit', admitted.rateLimit)
    ;(req as { tenant?: typeof TENANT }).tenant = admitted.tenant
    next()
  })
  app.get('/me/tenant', (req, res) => res.json((req as { tenant?: typeof TENANT }).tenant))
  return app
}

/** The floor as a Koa middleware. */
function koaFloor(admit: FloorCheck): Koa.Middleware {
  return (ctx, next) => {
    const admitted = admit(ctx.req.headers.authorization)
    if (typeof admitted === 'number') {
      ctx.status = admitted
      ctx.type = 'json'
      ctx.body = FLOOR_REFUSALS[admitted]
      return
    }
    ctx.res.setHeader('ratelimit-policy', admitted.policy)
    ctx.res.setHeader('ratelimit', admitted.rateLimit)
    ctx.state.tenant = admitted.tenant
    return next()
  }
}

/** A Koa app: `first` (none for bare Koa), then the handler answering `/me/tenant` with `tenant`. */
function koaApp(first: Koa.Middleware | null, tenant: (ctx: Koa.Context) => unknown, key: string): BuiltApp {
  const app = new Koa()
  if (first !== null) app.use(first)
  app.use((ctx) => {
    if (ctx.path === '/me/tenant') ctx.body = tenant(ctx)
  })
  const handle = app.callback()
  // Koa answers its own errors: the promise its handler returns never rejects.
  return { listener: (req, res) => void handle(req, res), key, handle }
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The floor's tenant, set by its hook. */
    tenant: typeof TENANT | null
  }
}

/**
 * A Fastify app with `register` applied, ready, as a request listener: Fastify's own
 * handler, taken from the server it would listen on (the HTTP runner gives it another).
 */
async function fastifyApp(register: (app: FastifyInstance) => void, key: string): Promise<BuiltApp> {
  let handler: RequestListener | undefined
  const app = Fastify({
    serverFactory: (fastifyHandler) => {
      handler = fastifyHandler
      return createServer(fastifyHandler)
    },
  })
  register(app)
  await app.ready()
  return { listener: handler!, key, close: () => void app.close() }
}

/** The floor as a Fastify `onRequest` hook, as saikuAuth authenticates: refusals answered there, the tenant decorated. */
function fastifyFloor(admit: FloorCheck): (app: FastifyInstance) => void {
  return (app) => {
    app.decorateRequest('tenant', null)
    app.addHook('onRequest', (request, reply, done) => {
      const admitted = admit(request.headers.authorization)
      if (typeof admitted === 'number') {
        reply.code(admitted).type('application/json; charset=utf-8').send(FLOOR_REFUSALS[admitted])
        return
      }
      reply.header('ratelimit-policy', admitted.policy)
      reply.header('ratelimit', admitted.rateLimit)
      request.tenant = admitted.tenant
      done()
    })
    app.get('/me/tenant', (request) => request.tenant)
  }
}

/** A Hono app on Node, through @hono/node-server's listener, as `serve()` runs it. */
function honoApp(
  app: { fetch: (request: Request, env: unknown) => Response | Promise<Response> },
  key: string,
): BuiltApp {
  const handle = getRequestListener(app.fetch)
  // The listener's promise settles once the response is written; it never rejects (Hono answers its own errors).
  return { listener: (req, res) => void handle(req, res), key, handle }
}

interface FloorEnv {
  Variables: { tenant: typeof TENANT }
}

/** The floor as a Hono middleware: refusals answered there, the fields set on the response to come. */
function honoFloor(admit: FloorCheck): Hono<FloorEnv> {
  const app = new Hono<FloorEnv>()
  const floor: MiddlewareHandler<FloorEnv> = async (c, next) => {
    const admitted = admit(c.req.header('authorization'))
    if (typeof admitted === 'number')
      return c.body(FLOOR_REFUSALS[admitted], admitted, { 'content-type': 'application/json; charset=utf-8' })
    c.header('ratelimit-policy', admitted.policy)
    c.header('ratelimit', admitted.rateLimit)
    c.set('tenant', admitted.tenant)
    await next()
  }
  app.use(floor)
  app.get('/me/tenant', (c) => c.json(c.get('tenant')))
  return app
}

/** saikuAuth's Hono middleware as users mount it (the client address from Node's socket), then the route. */
function honoSaiku(middleware: ReturnType<typeof saikuHono>): Hono<SaikuEnv> {
  const app = new Hono<SaikuEnv>()
  app.use(middleware)
  app.get('/me/tenant', (c) => c.json(c.get('saiku')!.tenant))
  return app
}

/**
 * For a Redis variant, the limiter on REDIS_URL in `options` and how to close its client: coalesced
 * (the default), on a client with auto-pipelining, or one script call per request as before coalescing.
 */
async function redisLimiter(variant: Variant, options: SaikuOptions): Promise<(() => void) | undefined> {
  if (!variant.includes('+redis')) return undefined
  const client = new Redis(process.env.REDIS_URL!, {
    enableOfflineQueue: false,
    enableAutoPipelining: variant.endsWith('-pipelined'),
  })
  await new Promise((resolve) => client.once('ready', resolve))
  const coalesce = !variant.endsWith('-per-call')
  options.limiter = { backend: createRedisLimiter({ client, keyPrefix: `saiku-bench-${process.pid}`, coalesce }) }
  return () => client.disconnect()
}

export async function build(variant: Variant): Promise<BuiltApp> {
  const options: SaikuOptions = { tiers: BENCH_TIERS }
  switch (variant) {
    case 'node:http':
      return {
        key: 'none',
        listener: (_req, res) => {
          res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' })
          res.end(body())
        },
      }
    case 'express': {
      const app = express()
      app.get('/me/tenant', (_req, res) => res.json(TENANT))
      return { listener: app, key: 'none' }
    }
    case 'express+saiku':
    case 'express+saiku+redis':
    case 'express+saiku+redis-pipelined':
    case 'express+saiku+redis-per-call': {
      const { store, key } = await saikuStore()
      const close = await redisLimiter(variant, options)
      const app = express()
      app.use(saikuExpress(store, options))
      app.get('/me/tenant', (req, res) => res.json(req.saiku!.tenant))
      return { listener: app, key, ...(close === undefined ? {} : { close }) }
    }
    case 'express+floor':
    case 'express+hashfloor': {
      const key = mintApiKey().key
      return { listener: expressFloor((variant === 'express+floor' ? createFloor : createHashingFloor)(key)), key }
    }
    case 'express+passport+erl': {
      // The popular stack doing the same job: a bearer lookup by SHA-256, then per-tenant minute and hour limits.
      const key = 'sk_live_popularstackbenchmarkkey000000000000000000000000'
      const tokens = new Map([[createHash('sha256').update(key).digest('hex'), TENANT]])
      passport.use(
        new BearerStrategy((token, done) =>
          done(null, tokens.get(createHash('sha256').update(token).digest('hex')) ?? false),
        ),
      )
      const byTenant = (windowMs: number) =>
        rateLimit({
          windowMs,
          limit: 1_000_000_000,
          standardHeaders: 'draft-8',
          legacyHeaders: false,
          identifier: windowMs === 60_000 ? 'minute' : 'hour',
          keyGenerator: (req) => (req.user as typeof TENANT).tenantId,
        })
      const app = express()
      app.use(passport.initialize())
      app.use(passport.authenticate('bearer', { session: false }))
      app.use(byTenant(60_000))
      app.use(byTenant(3_600_000))
      app.get('/me/tenant', (req, res) => res.json(req.user))
      return { listener: app, key }
    }
    case 'koa':
      return koaApp(null, () => TENANT, 'none')
    case 'koa+saiku':
    case 'koa+saiku+redis':
    case 'koa+saiku+redis-pipelined':
    case 'koa+saiku+redis-per-call': {
      const made = await saikuStore()
      const close = await redisLimiter(variant, options)
      const app = koaApp(saikuKoa(made.store, options), (ctx) => ctx.state.saiku!.tenant, made.key)
      return close === undefined ? app : { ...app, close }
    }
    case 'koa+floor':
    case 'koa+hashfloor': {
      const key = mintApiKey().key
      const admit = (variant === 'koa+floor' ? createFloor : createHashingFloor)(key)
      return koaApp(koaFloor(admit), (ctx) => ctx.state.tenant as typeof TENANT, key)
    }
    case 'fastify':
      return fastifyApp((app) => app.get('/me/tenant', () => TENANT), 'none')
    case 'fastify+saiku': {
      const { store, key } = await saikuStore()
      return fastifyApp((app) => {
        void app.register(saikuFastify(store, options))
        app.get('/me/tenant', (request) => request.saiku!.tenant)
      }, key)
    }
    case 'fastify+floor':
    case 'fastify+hashfloor': {
      const key = mintApiKey().key
      return fastifyApp(fastifyFloor((variant === 'fastify+floor' ? createFloor : createHashingFloor)(key)), key)
    }
    case 'hono':
      return honoApp(
        new Hono().get('/me/tenant', (c) => c.json(TENANT)),
        'none',
      )
    case 'hono+saiku': {
      const { store, key } = await saikuStore()
      return honoApp(honoSaiku(saikuHono(store, { ...options, getConnInfo })), key)
    }
    case 'hono+floor':
    case 'hono+hashfloor': {
      const key = mintApiKey().key
      return honoApp(honoFloor((variant === 'hono+floor' ? createFloor : createHashingFloor)(key)), key)
    }
  }
}

/**
 * The parts of saikuAuth's distance to the floor, measured in process beside it:
 * - `hashing`: the hashing floor, the floor plus one SHA-256 of the presented token and a
 *   constant-time digest compare: what keeping only digests of keys costs every request;
 * - `adapter`: saikuAuth's adapter around the floor's decision: the request mapped in,
 *   the decision's fields and principal written out.
 */
export type FloorPart = 'hashing' | 'adapter'

/** The floor's answer as the decision saikuAuth's core would give (the floor admits every bench request). */
function floorDecision(admitted: FloorAdmitted | number): AuthDecision {
  if (typeof admitted === 'number') throw new Error(`in-process bench: the floor answered ${admitted}`)
  return {
    ok: true,
    principal: { tenant: admitted.tenant } as never,
    headers: { 'ratelimit-policy': admitted.policy, ratelimit: admitted.rateLimit },
  }
}

export async function buildPart(framework: (typeof FLOORS)[number]['framework'], part: FloorPart): Promise<BuiltApp> {
  const key = mintApiKey().key
  if (part === 'hashing') {
    const admit = createHashingFloor(key)
    if (framework === 'Express') return { listener: expressFloor(admit), key }
    if (framework === 'Koa') return koaApp(koaFloor(admit), (ctx) => ctx.state.tenant as typeof TENANT, key)
    if (framework === 'Hono') return honoApp(honoFloor(admit), key)
    return fastifyApp(fastifyFloor(admit), key)
  }
  // The adapter as users mount it; only the core's decision is the floor's.
  const floor = createFloor(key)
  const check = (request: { headers: Record<string, string | string[] | undefined> }) =>
    floorDecision(floor(request.headers.authorization as string | undefined))
  if (framework === 'Express') {
    const middleware = saikuExpress(new MemoryKeyStore())
    Object.assign(middleware.authenticator, { check })
    const app = express()
    app.use(middleware)
    app.get('/me/tenant', (req, res) => res.json(req.saiku!.tenant))
    return { listener: app, key }
  }
  if (framework === 'Koa') {
    const middleware = saikuKoa(new MemoryKeyStore())
    Object.assign(middleware.authenticator, { check })
    return koaApp(middleware, (ctx) => ctx.state.saiku!.tenant, key)
  }
  if (framework === 'Hono') {
    const middleware = saikuHono(new MemoryKeyStore(), { getConnInfo })
    Object.assign(middleware.authenticator, { check })
    return honoApp(honoSaiku(middleware), key)
  }
  const plugin = saikuFastify(new MemoryKeyStore())
  Object.assign(plugin.authenticator, { check })
  return fastifyApp((app) => {
    void app.register(plugin)
    app.get('/me/tenant', (request) => request.saiku!.tenant)
  }, key)
}
