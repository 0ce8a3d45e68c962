import cors from '@koa/cors'
import Router from '@koa/router'
import Koa from 'koa'
import { saikuAuth, saikuErrors, type KeyStore } from '@saiku/koa'

const allowedOrigins = new Set(['https://app.example.com'])

export function createApp(store: KeyStore): Koa {
  const app = new Koa()
  const router = new Router()
  router.get('/me/tenant', (ctx) => {
    ctx.body = ctx.state.saiku!.tenant
  })

  app.use(saikuErrors())
  // Before saikuAuth: @koa/cors ends a preflight with 204 before a key is asked for.
  app.use(
    cors({
      // An origin not in the list gets no CORS headers at all ('' leaves them off).
      origin: (ctx) => (allowedOrigins.has(ctx.get('Origin')) ? ctx.get('Origin') : ''),
      allowHeaders: ['Authorization', 'Content-Type'],
      exposeHeaders: ['RateLimit', 'RateLimit-Policy', 'Retry-After'], // readable from scripts
      maxAge: 600,
    }),
  )
  app.use(saikuAuth(store))
  app.use(router.routes())
  return app
}
