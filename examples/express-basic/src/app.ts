import express from 'express'
import { requirePermission, saikuAuth, saikuErrors, type KeyStore } from '@saiku/express'

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

  app.use(saikuErrors()) // last: unknown routes and thrown errors as JSON, never a stack trace
  return app
}
