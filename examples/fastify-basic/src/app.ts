import Fastify, { type FastifyInstance } from 'fastify'
import { requirePermission, saikuAuth, saikuErrors, type KeyStore } from '@saiku/fastify'

export function createApp(store: KeyStore): FastifyInstance {
  const app = Fastify()
  const auth = saikuAuth(store, { subscription: { exemptPaths: ['/me/billing'] } })
  app.register(auth) // every route of this context and its children; refused in onRequest, before the body is read
  app.register(saikuErrors()) // unknown routes and thrown errors as JSON, never a stack trace

  app.get('/me/tenant', async (request) => {
    return request.saiku!.tenant // { tenantId, tenantSlug, tier, connectionName }
  })

  app.get('/me/api-keys', { preHandler: requirePermission('keys:read') }, async (request) => {
    return { keys: await auth.authenticator.keys.list(request.saiku!.tenant.tenantId) }
  })

  return app
}
