import { bodyParser } from '@koa/bodyparser'
import Router from '@koa/router'
import Koa from 'koa'
import type { TenantAdminStore } from '@saiku/core'
import { createKey, listKeys, revokeKey, type ApiResult } from './api.js'
import { requirePermission, saikuAuth, saikuErrors, type SaikuMiddleware, type SaikuOptions } from '@saiku/koa'

/** The reference server's tenant and key routes on Koa, with the same route logic and store. */
export function createApp(store: TenantAdminStore, options: SaikuOptions = {}): { app: Koa; auth: SaikuMiddleware } {
  const app = new Koa()
  const auth = saikuAuth(store, options)
  const keys = auth.authenticator.keys
  const router = new Router()
  const send = (ctx: Koa.Context, result: ApiResult) => {
    ctx.status = result.status
    if (result.body !== undefined) ctx.body = result.body
  }

  router.get('/me/tenant', (ctx) => {
    ctx.body = ctx.state.saiku!.tenant
  })
  router.get('/me/api-keys', requirePermission('keys:read'), async (ctx) => send(ctx, await listKeys(keys, ctx.state.saiku!)))
  router.post('/me/api-keys', requirePermission('keys:write'), async (ctx) => send(ctx, await createKey(keys, ctx.state.saiku!, ctx.request.body)))
  router.delete('/me/api-keys/:keyId', requirePermission('keys:write'), async (ctx) => send(ctx, await revokeKey(keys, ctx.state.saiku!, ctx.params.keyId!)))

  app.use(saikuErrors())
  app.use(auth)
  app.use(bodyParser({ enableTypes: ['json'], jsonLimit: '16kb' }))
  app.use(router.routes())
  app.use(router.allowedMethods({ throw: true }))
  return { app, auth }
}
