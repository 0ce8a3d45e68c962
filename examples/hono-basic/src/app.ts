import { Hono } from 'hono'
import { getConnInfo } from '@hono/node-server/conninfo'
import type { KeyStore } from '@saiku/fetch'
import { requirePermission, saikuAuth, saikuErrors, saikuNotFound, type SaikuEnv } from '@saiku/fetch/hono'

export function createApp(store: KeyStore): Hono<SaikuEnv> {
  const app = new Hono<SaikuEnv>()
  const auth = saikuAuth(store, { getConnInfo, subscription: { exemptPaths: ['/me/billing'] } })
  app.use(auth) // a refused request is answered here and never reaches a route
  app.onError(saikuErrors()) // thrown errors as JSON, never a stack trace
  app.notFound(saikuNotFound()) // unknown routes as the JSON 404, after authentication

  app.get('/me/tenant', (c) => {
    return c.json(c.get('saiku')!.tenant) // { tenantId, tenantSlug, tier, connectionName }
  })

  app.get('/me/api-keys', requirePermission('keys:read'), async (c) => {
    return c.json({ keys: await auth.authenticator.keys.list(c.get('saiku')!.tenant.tenantId) })
  })

  return app
}
