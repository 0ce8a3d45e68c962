import Router from '@koa/router'
import Koa from 'koa'
import { MemoryKeyStore, requirePermission, saikuAuth, saikuErrors } from '@saiku/koa'

export function createApp(store: MemoryKeyStore): Koa {
  // #region readme
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
  // #endregion readme
  return app
}
