import { Hono } from 'hono'
import { cors } from 'hono/cors'
import { getConnInfo } from '@hono/node-server/conninfo'
import type { KeyStore } from '@saiku/fetch'
import { saikuAuth, saikuErrors, saikuNotFound, type SaikuEnv } from '@saiku/fetch/hono'

export function createApp(store: KeyStore): Hono<SaikuEnv> {
  const app = new Hono<SaikuEnv>()
  // First: a preflight ends here with 204, unauthenticated and uncounted; scripts may read the rate-limit fields.
  app.use(cors({ origin: 'https://app.example.com', exposeHeaders: ['RateLimit', 'RateLimit-Policy', 'Retry-After'] }))
  app.use(saikuAuth(store, { getConnInfo }))
  app.onError(saikuErrors())
  app.notFound(saikuNotFound())

  app.get('/me/tenant', (c) => c.json(c.get('saiku')!.tenant))
  return app
}
