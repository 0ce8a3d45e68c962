import Router from '@koa/router'
import Koa3 from 'koa'
import Koa2 from 'koa2'
import { ownedByTenant, requirePermission, saikuAuth, saikuErrors, SaikuHttpError } from '@saiku/koa'
import type { AdapterHarness } from './harness.js'

function koaHarness(name: string, Koa: typeof Koa3): AdapterHarness {
  return {
    name,
    createApp(store, options, fixtures, settings = {}) {
      const app = new Koa()
      app.proxy = settings.trustProxy === true
      app.on('error', (error) => fixtures.errors.push(error))
      const auth = saikuAuth(store, options)
      // What has no principal to ask challenges the authenticator's realm.
      const { realm } = options
      const router = new Router(settings.mountAt === undefined ? {} : { prefix: settings.mountAt })
      // Below a mount point the middleware runs inside the router, registered before its routes.
      if (settings.mountAt !== undefined) {
        router.use(auth)
        if (settings.mountTwice === true) router.use(auth)
      }
      router.get('/me/tenant', (ctx) => {
        fixtures.hits.tenant++
        ctx.body = ctx.state.saiku!.tenant
      })
      router.options('/me/tenant', (ctx) => {
        fixtures.hits.preflight++
        ctx.status = 204
      })
      router.get('/me/whoami', (ctx) => {
        const { saiku, saikuUnverified } = ctx.state
        ctx.body = {
          tenantId: saiku?.tenant.tenantId ?? null,
          overLimit: saiku?.rateLimit?.admitted === false,
          unverified: saikuUnverified ?? null,
        }
      })
      router.get('/me/billing', (ctx) => {
        ctx.body = { status: ctx.state.saiku!.subscription.status }
      })
      router.get('/me/api-keys', requirePermission('keys:read', { realm }), async (ctx) => {
        ctx.body = { keys: await auth.authenticator.keys.list(ctx.state.saiku!.tenant.tenantId) }
      })
      router.delete('/me/api-keys/:keyId', requirePermission('keys:write', { realm }), async (ctx) => {
        const revoked = await auth.authenticator.keys.revoke(ctx.state.saiku!.tenant.tenantId, ctx.params.keyId!)
        if (!revoked) throw new SaikuHttpError('not_found')
        ctx.status = 204
      })
      router.get('/me/projects/:id', (ctx) => {
        ctx.body = ownedByTenant(ctx.state.saiku!, fixtures.projects.get(ctx.params.id!))
      })
      router.get('/me/reauthenticate', () => {
        throw new SaikuHttpError('unauthorized')
      })
      router.get('/me/boom', (ctx) => {
        ctx.set('content-length', '5')
        ctx.set('etag', '"x"')
        throw new Error('database password is hunter2')
      })
      router.get('/me/fail-after-write', (ctx) => {
        ctx.status = 200
        ctx.res.write('{"partial":')
        throw new Error('failed after the response started')
      })
      const { errorsOnError } = settings
      app.use(saikuErrors(errorsOnError === undefined ? { realm } : { realm, onError: errorsOnError }))
      if (settings.mountAt === undefined) {
        app.use(auth)
        if (settings.mountTwice === true) app.use(auth)
        if (settings.secondInstance === true) app.use(saikuAuth(store, options))
      }
      app.use(router.routes())
      const callback = app.callback()
      // Koa answers its own errors: the promise it returns never rejects.
      return { handler: (req, res) => void callback(req, res), authenticator: auth.authenticator }
    },
  }
}

export const koa3Harness: AdapterHarness = koaHarness('koa 3', Koa3)
export const koa2Harness: AdapterHarness = koaHarness('koa 2', Koa2)
