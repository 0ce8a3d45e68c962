import Fastify, { type FastifyInstance } from 'fastify'
import { ownedByTenant, requirePermission, saikuAuth, saikuErrors, SaikuHttpError } from '@saiku/fastify'
import type { AdapterHarness } from './harness.js'

export const fastifyHarness: AdapterHarness = {
  name: 'fastify 5',
  createApp(store, options, fixtures, settings = {}) {
    // Routed as Express and Koa route by default (any case, a trailing slash ignored), so the
    // exemption cases ask the same paths of every adapter. Fastify's own default routes fewer
    // paths than the core exempts: those are 404s (pinned in packages/fastify/src/index.test.ts).
    const app = Fastify({
      trustProxy: settings.trustProxy === true,
      routerOptions: { caseSensitive: false, ignoreTrailingSlash: true },
    })
    const auth = saikuAuth(store, options)
    // What has no principal to ask challenges the authenticator's realm.
    const { realm } = options
    app.register(saikuErrors({ realm, onError: settings.errorsOnError ?? ((error) => fixtures.errors.push(error)) }))
    const routes = (scope: FastifyInstance): void => {
      scope.register(auth)
      if (settings.mountTwice === true) scope.register(auth)
      if (settings.secondInstance === true) scope.register(saikuAuth(store, options))
      scope.get('/me/tenant', async (request) => {
        fixtures.hits.tenant++
        return request.saiku!.tenant
      })
      scope.options('/me/tenant', async (_request, reply) => {
        fixtures.hits.preflight++
        return reply.code(204).send()
      })
      scope.get('/me/whoami', async (request) => ({
        tenantId: request.saiku?.tenant.tenantId ?? null,
        overLimit: request.saiku?.rateLimit?.admitted === false,
        unverified: request.saikuUnverified ?? null,
      }))
      scope.get('/me/billing', async (request) => ({ status: request.saiku!.subscription.status }))
      scope.get('/me/api-keys', { preHandler: requirePermission('keys:read', { realm }) }, async (request) => ({
        keys: await auth.authenticator.keys.list(request.saiku!.tenant.tenantId),
      }))
      scope.delete<{ Params: { keyId: string } }>(
        '/me/api-keys/:keyId',
        { preHandler: requirePermission('keys:write', { realm }) },
        async (request, reply) => {
          const revoked = await auth.authenticator.keys.revoke(request.saiku!.tenant.tenantId, request.params.keyId)
          if (!revoked) throw new SaikuHttpError('not_found')
          return reply.code(204).send()
        },
      )
      scope.get<{ Params: { id: string } }>('/me/projects/:id', async (request) =>
        ownedByTenant(request.saiku!, fixtures.projects.get(request.params.id)),
      )
      scope.get('/me/reauthenticate', () => {
        throw new SaikuHttpError('unauthorized')
      })
      scope.get('/me/boom', (_request, reply) => {
        reply.header('content-length', '5')
        reply.header('etag', '"x"')
        throw new Error('database password is hunter2')
      })
      scope.get('/me/fail-after-write', (_request, reply) => {
        reply.raw.statusCode = 200
        reply.raw.write('{"partial":')
        throw new Error('failed after the response started')
      })
    }
    if (settings.mountAt === undefined) routes(app)
    else app.register(async (api) => routes(api), { prefix: settings.mountAt })
    const ready = app.ready()
    return {
      handler: (req, res) => {
        ready.then(
          () => app.routing(req, res),
          (error: unknown) => res.writeHead(500).end(String(error)),
        )
      },
      authenticator: auth.authenticator,
    }
  },
}
