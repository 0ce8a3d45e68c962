// The servers the benchmark compares, as request listeners: the HTTP runner serves
// them from their own processes, the in-process measure calls them directly.
import { createHash, hash } from 'node:crypto'
import { IncomingMessage, ServerResponse, type RequestListener } from 'node:http'
import { Socket } from 'node:net'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { getHeapStatistics } from 'node:v8'
import express from 'express'
import rateLimit from 'express-rate-limit'
import Koa from 'koa'
import passport from 'passport'
import { Strategy as BearerStrategy } from 'passport-http-bearer'
import { Redis } from 'ioredis'
import { createKeyManager, MemoryKeyStore, mintApiKey, type SaikuOptions } from '@saiku/core'
import type { AuthDecision } from '@saiku/core/adapter'
import { saikuAuth as saikuExpress } from '@saiku/express'
import { saikuAuth as saikuKoa } from '@saiku/koa'
import { createRedisLimiter } from '@saiku/redis'
import { createFloor, FLOOR_REFUSALS, type FloorAdmitted } from './floor.js'
import { BENCH_TIERS, TENANT, type Variant } from './variants.js'

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

// As the verifier takes it: a 32-character latin1 string (the typings leave latin1 out).
const sha256Latin1 = (data: string): string =>
  (hash as (algorithm: string, data: string, encoding: string) => string)('sha256', data, 'latin1')

type FloorCheck = (authorization: string | undefined) => FloorAdmitted | 401 | 429

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
    case 'express+saiku+redis': {
      const { store, key } = await saikuStore()
      let close: (() => void) | undefined
      if (variant === 'express+saiku+redis') {
        const client = new Redis(process.env.REDIS_URL!, { enableOfflineQueue: false })
        await new Promise((resolve) => client.once('ready', resolve))
        options.limiter = { backend: createRedisLimiter({ client, keyPrefix: `saiku-bench-${process.pid}` }) }
        close = () => client.disconnect()
      }
      const app = express()
      app.use(saikuExpress(store, options))
      app.get('/me/tenant', (req, res) => res.json(req.saiku!.tenant))
      return { listener: app, key, ...(close === undefined ? {} : { close }) }
    }
    case 'express+floor': {
      const key = mintApiKey().key
      return { listener: expressFloor(createFloor(key)), key }
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
    case 'koa+saiku': {
      const made = await saikuStore()
      return koaApp(saikuKoa(made.store, options), (ctx) => ctx.state.saiku!.tenant, made.key)
    }
    case 'koa+floor': {
      const key = mintApiKey().key
      return koaApp(koaFloor(createFloor(key)), (ctx) => ctx.state.tenant as typeof TENANT, key)
    }
  }
}

/**
 * The parts of saikuAuth's distance to the floor, measured in process beside it:
 * - `sha256`: the floor plus one SHA-256 of the presented token, the hash that keeping
 *   only digests of keys costs every request;
 * - `adapter`: saikuAuth's adapter around the floor's decision: the request mapped in,
 *   the decision's fields and principal written out.
 */
export type FloorPart = 'sha256' | 'adapter'

/** The floor's answer as the decision saikuAuth's core would give (the floor admits every bench request). */
function floorDecision(admitted: FloorAdmitted | number): AuthDecision {
  if (typeof admitted === 'number') throw new Error(`in-process bench: the floor answered ${admitted}`)
  return {
    ok: true,
    principal: { tenant: admitted.tenant } as never,
    headers: { 'ratelimit-policy': admitted.policy, ratelimit: admitted.rateLimit },
  }
}

export async function buildPart(framework: 'Express' | 'Koa', part: FloorPart): Promise<BuiltApp> {
  const key = mintApiKey().key
  const floor = createFloor(key)
  // The floor, plus the hash when asked: the token's SHA-256, as the verifier takes it.
  const admit: FloorCheck = (authorization) => {
    if (part === 'sha256' && authorization !== undefined) sha256Latin1(authorization.slice(7))
    return floor(authorization)
  }
  if (part === 'adapter') {
    // The adapter as users mount it; only the core's decision is the floor's.
    const middleware = framework === 'Express' ? saikuExpress(new MemoryKeyStore()) : saikuKoa(new MemoryKeyStore())
    Object.assign(middleware.authenticator, {
      check: (request: { headers: Record<string, string | string[] | undefined> }) =>
        floorDecision(floor(request.headers.authorization as string | undefined)),
    })
    if (framework === 'Express') {
      const app = express()
      app.use(middleware as ReturnType<typeof saikuExpress>)
      app.get('/me/tenant', (req, res) => res.json(req.saiku!.tenant))
      return { listener: app, key }
    }
    return koaApp(middleware as ReturnType<typeof saikuKoa>, (ctx) => ctx.state.saiku!.tenant, key)
  }
  if (framework === 'Express') return { listener: expressFloor(admit), key }
  return koaApp(koaFloor(admit), (ctx) => ctx.state.tenant as typeof TENANT, key)
}
