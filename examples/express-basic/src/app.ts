import express from 'express'
import { requirePermission, saikuAuth, saikuErrorHandler, saikuNotFound, type KeyStore } from '@saiku/express'

export function createApp(store: KeyStore): express.Express {
  const app = express()
  const auth = saikuAuth(store, { subscription: { exemptPaths: ['/me/billing'] } })
  app.use(auth)

  app.get('/me/tenant', (req, res) => {
    res.json(req.saiku!.tenant) // { tenantId, tenantSlug, tier, connectionName }
  })

  app.get('/me/api-keys', requirePermission('keys:read'), async (req, res) => {
    res.json({ keys: await auth.authenticator.keys.list(req.saiku!.tenant.tenantId) })
  })

  app.use(saikuNotFound()) // unknown routes: {"error":"not_found",…}
  app.use(saikuErrorHandler()) // thrown errors: the same JSON shape, never a stack trace
  return app
}
