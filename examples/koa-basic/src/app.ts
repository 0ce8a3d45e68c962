import Router from '@koa/router'
import Koa from 'koa'
import { requirePermission, saikuAuth, saikuErrors, type KeyStore } from '@saiku/koa'

export function createApp(store: KeyStore): Koa {
  const app = new Koa()
  const auth = saikuAuth(store, { subscription: { exemptPaths: ['/me/billing'] } })
  const router = new Router()

  router.get('/me/tenant', (ctx) => {
    ctx.body = ctx.state.saiku!.tenant // { tenantId, tenantSlug, tier, connectionName }
  })

  router.get('/me/api-keys', requirePermission('keys:read'), async (ctx) => {
    ctx.body = { keys: await auth.authenticator.keys.list(ctx.state.saiku!.tenant.tenantId) }
  })

  app.use(saikuErrors()) // first: thrown errors and unknown routes as JSON
  app.use(auth)
  app.use(router.routes())
  app.use(router.allowedMethods()) // a 405 with its Allow header, in JSON through saikuErrors()
  return app
}
