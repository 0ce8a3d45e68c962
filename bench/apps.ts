// The servers the benchmark compares, as request listeners: the HTTP runner serves
// them from their own processes, the in-process measure calls them directly.
import { createHash } from 'node:crypto'
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http'
import express from 'express'
import rateLimit from 'express-rate-limit'
import Koa from 'koa'
import passport from 'passport'
import { Strategy as BearerStrategy } from 'passport-http-bearer'
import { Redis } from 'ioredis'
import { createKeyManager, MemoryKeyStore, mintApiKey, type SaikuOptions } from '@saiku/core'
import { saikuAuth as saikuExpress } from '@saiku/express'
import { saikuAuth as saikuKoa } from '@saiku/koa'
import { createRedisLimiter } from '@saiku/redis'
import { createFloor, FLOOR_REFUSALS } from './floor.js'
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

async function saikuStore(): Promise<{ store: MemoryKeyStore; key: string }> {
  const store = new MemoryKeyStore({ tiers: { ...BENCH_TIERS, starter: { perMinute: 60, perHour: 1000 } } })
  store.putTenant({ ...TENANT, subscription: { status: 'active' } })
  const { key } = await createKeyManager(store).create(TENANT.tenantId, { label: 'bench' })
  return { store, key }
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
      const floor = createFloor(key)
      const app = express()
      app.use((req, res, next) => {
        const admitted = floor(req.headers.authorization)
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
      return { listener: app, key }
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
    case 'koa+saiku':
    case 'koa+floor': {
      const app = new Koa()
      let key = 'none'
      if (variant === 'koa+saiku') {
        const made = await saikuStore()
        key = made.key
        app.use(saikuKoa(made.store, options))
      } else if (variant === 'koa+floor') {
        key = mintApiKey().key
        const floor = createFloor(key)
        app.use((ctx, next) => {
          const admitted = floor(ctx.req.headers.authorization)
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
        })
      }
      app.use((ctx) => {
        if (ctx.path === '/me/tenant')
          ctx.body =
            variant === 'koa'
              ? TENANT
              : variant === 'koa+floor'
                ? (ctx.state.tenant as typeof TENANT)
                : ctx.state.saiku!.tenant
      })
      const handle = app.callback()
      // Koa answers its own errors: the promise its handler returns never rejects.
      return { listener: (req, res) => void handle(req, res), key, handle }
    }
  }
}
