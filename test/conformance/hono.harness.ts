import { getRequestListener } from '@hono/node-server'
import { getConnInfo } from '@hono/node-server/conninfo'
import { Hono } from 'hono'
import { ownedByTenant, SaikuHttpError } from '@saiku/fetch'
import { requirePermission, saikuAuth, saikuErrors, saikuNotFound, type SaikuEnv } from '@saiku/fetch/hono'
import type { AdapterHarness } from './harness.js'

export const honoHarness: AdapterHarness = {
  name: 'hono 4',
  notApplicable: {
    'adapter conformance: hono 4: error handling and error bodies > never answers twice, nor with a 401, once a response has started':
      'a Hono handler returns its Response before the body streams: an error in the body stream is the host server’s to report, after the middleware has answered',
    'adapter conformance: hono 4: hooks that throw or reject > saikuErrors({ onError }) as an async hook that rejects: still the JSON 500, one warning per distinct message':
      'its last step needs an error after the response started, which a Hono handler cannot make (see that case); saikuErrors’ onError that rejects is pinned in packages/fetch/src/hono.test.ts',
    'adapter conformance: hono 4: hooks that throw or reject > saikuErrors({ onError }) as a hook that throws: still the JSON 500, one warning per distinct message':
      'its last step needs an error after the response started, which a Hono handler cannot make (see that case); saikuErrors’ onError that throws is pinned in packages/fetch/src/hono.test.ts',
  },
  createApp(store, options, fixtures, settings = {}) {
    // Routed as Express routes by default (any case, a trailing slash ignored), so the exemption cases ask
    // the same paths of every adapter.
    const app = new Hono<SaikuEnv>({
      getPath: (request) => {
        // Route names in any case; the IDs after them (key IDs hold capitals) as sent.
        const segments = new URL(request.url).pathname.split('/')
        const path = segments
          .map((segment, i) => (/^(api-keys|projects)$/i.test(segments[i - 1] ?? '') ? segment : segment.toLowerCase()))
          .join('/')
        return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path
      },
    })
    const auth = saikuAuth(
      store,
      settings.trustProxy === true
        ? { ...options, clientAddressHeader: 'x-forwarded-for' }
        : { ...options, getConnInfo },
    )
    const { realm } = options
    const routes = settings.mountAt === undefined ? app : new Hono<SaikuEnv>()
    routes.use(auth)
    if (settings.mountTwice === true) routes.use(auth)
    if (settings.secondInstance === true) routes.use(saikuAuth(store, { ...options, getConnInfo }))
    routes.get('/me/tenant', (c) => {
      fixtures.hits.tenant++
      return c.json(c.get('saiku')!.tenant)
    })
    routes.options('/me/tenant', (c) => {
      fixtures.hits.preflight++
      return c.body(null, 204)
    })
    routes.get('/me/whoami', (c) =>
      c.json({
        tenantId: c.get('saiku')?.tenant.tenantId ?? null,
        overLimit: c.get('saiku')?.rateLimit?.admitted === false,
        unverified: c.get('saikuUnverified') ?? null,
      }),
    )
    routes.get('/me/billing', (c) => c.json({ status: c.get('saiku')!.subscription.status }))
    routes.get('/me/api-keys', requirePermission('keys:read', { realm }), async (c) =>
      c.json({ keys: await auth.authenticator.keys.list(c.get('saiku')!.tenant.tenantId) }),
    )
    routes.delete('/me/api-keys/:keyId', requirePermission('keys:write', { realm }), async (c) => {
      if (!(await auth.authenticator.keys.revoke(c.get('saiku')!.tenant.tenantId, c.req.param('keyId'))))
        throw new SaikuHttpError('not_found')
      return c.body(null, 204)
    })
    routes.get('/me/projects/:id', (c) =>
      c.json(ownedByTenant(c.get('saiku')!, fixtures.projects.get(c.req.param('id')))),
    )
    routes.get('/me/reauthenticate', () => {
      throw new SaikuHttpError('unauthorized')
    })
    routes.get('/me/boom', (c) => {
      c.header('content-length', '5')
      c.header('etag', '"x"')
      throw new Error('database password is hunter2')
    })
    if (settings.mountAt !== undefined) app.route(settings.mountAt, routes)
    app.onError(saikuErrors({ realm, onError: settings.errorsOnError ?? ((error) => fixtures.errors.push(error)) }))
    app.notFound(saikuNotFound())
    // The bridge answers every request itself, errors included: nothing is left to await.
    const listener = getRequestListener(app.fetch)
    return { handler: (req, res) => void listener(req, res), authenticator: auth.authenticator }
  },
}
