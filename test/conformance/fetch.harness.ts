import { getRequestListener, type Http2Bindings, type HttpBindings } from '@hono/node-server'
import {
  ownedByTenant,
  requirePermission,
  saikuAuth,
  SaikuHttpError,
  unverifiedOf,
  withSaiku,
  type SaikuFetchAuth,
  type SaikuPrincipal,
} from '@saiku/fetch'
import type { AdapterHarness, AppFixtures } from './harness.js'

/** What the Node bridge passes beside the request, as Deno passes `info` and Bun its server. */
type NodeBindings = HttpBindings | Http2Bindings

// Routed as Express routes by default: any case, a trailing slash ignored; the IDs in a path as sent.
function routeOf(request: Request): string {
  const path = new URL(request.url).pathname
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path
}

function routes(
  auth: SaikuFetchAuth,
  fixtures: AppFixtures,
  realm: string | undefined,
): (request: Request, principal: SaikuPrincipal | null) => Promise<Response> {
  const keysRead = requirePermission('keys:read', { realm })
  const keysWrite = requirePermission('keys:write', { realm })
  return async (request, principal) => {
    const path = routeOf(request)
    const route = path.toLowerCase()
    const get = request.method === 'GET'
    if (get && route === '/me/tenant') {
      fixtures.hits.tenant++
      return Response.json(principal!.tenant)
    }
    if (request.method === 'OPTIONS' && route === '/me/tenant') {
      fixtures.hits.preflight++
      return new Response(null, { status: 204 })
    }
    if (get && route === '/me/whoami')
      return Response.json({
        tenantId: principal?.tenant.tenantId ?? null,
        overLimit: principal?.rateLimit?.admitted === false,
        unverified: unverifiedOf(request),
      })
    if (get && route === '/me/billing') return Response.json({ status: principal!.subscription.status })
    if (get && route === '/me/api-keys')
      return (
        keysRead(principal) ?? Response.json({ keys: await auth.authenticator.keys.list(principal!.tenant.tenantId) })
      )
    const keyId = /^\/me\/api-keys\/([^/]+)$/i.exec(path)?.[1]
    if (request.method === 'DELETE' && keyId !== undefined) {
      const refused = keysWrite(principal)
      if (refused !== null) return refused
      if (!(await auth.authenticator.keys.revoke(principal!.tenant.tenantId, keyId)))
        throw new SaikuHttpError('not_found')
      return new Response(null, { status: 204 })
    }
    const projectId = /^\/me\/projects\/([^/]+)$/i.exec(path)?.[1]
    if (get && projectId !== undefined)
      return Response.json(ownedByTenant(principal!, fixtures.projects.get(projectId)))
    if (get && route === '/me/reauthenticate') throw new SaikuHttpError('unauthorized')
    if (get && route === '/me/boom') throw new Error('database password is hunter2')
    throw new SaikuHttpError('not_found')
  }
}

export const fetchHarness: AdapterHarness = {
  name: 'fetch',
  notApplicable: {
    'adapter conformance: fetch: error handling and error bodies > never answers twice, nor with a 401, once a response has started':
      'a Fetch handler returns its Response before the body streams: an error in the body stream is the host server’s to report, after withSaiku has answered',
    'adapter conformance: fetch: subscription > matches exempt paths below the mount point when the middleware is mounted in a router':
      'a Fetch handler has no mount point: it and its exemptions see the full path',
    'adapter conformance: fetch: per-route cost > asks the cost function once per request with the method, the mounted path and the tenant':
      'a Fetch handler has no mount point: the cost function sees the full path',
    'adapter conformance: fetch: CORS preflights > below a mount point too':
      'a Fetch handler has no mount point: a preflight is matched on the full path',
    'adapter conformance: fetch: hooks that throw or reject > saikuErrors({ onError }) as an async hook that rejects: still the JSON 500, one warning per distinct message':
      'its last step needs an error after the response started, which a Fetch handler cannot make (see that case); withSaiku’s onError that rejects is pinned in packages/fetch/src/index.test.ts',
    'adapter conformance: fetch: hooks that throw or reject > saikuErrors({ onError }) as a hook that throws: still the JSON 500, one warning per distinct message':
      'its last step needs an error after the response started, which a Fetch handler cannot make (see that case); withSaiku’s onError that throws is pinned in packages/fetch/src/index.test.ts',
  },
  createApp(store, options, fixtures, settings = {}) {
    // Behind a trusted proxy, the address is the one it appended to X-Forwarded-For.
    const authOptions = settings.trustProxy === true ? { ...options, clientAddressHeader: 'x-forwarded-for' } : options
    const auth = saikuAuth(store, authOptions)
    const clientAddress = (_request: Request, bindings: NodeBindings) => bindings.incoming.socket.remoteAddress
    // Mounted twice: the same authenticator asked again about the same request, as a proxy and a route would.
    const extra: SaikuFetchAuth[] = []
    if (settings.mountTwice === true) extra.push(auth)
    if (settings.secondInstance === true) extra.push(saikuAuth(store, authOptions))
    const route = routes(auth, fixtures, options.realm)
    const handler = withSaiku(
      auth,
      async (request, principal, bindings: NodeBindings) => {
        const fields: Record<string, string> = {}
        for (const next of extra) {
          const result = await next(request, { clientAddress: clientAddress(request, bindings) })
          if (!result.ok) return result.response
          Object.assign(fields, result.headers)
        }
        const response = await route(request, principal)
        for (const name in fields) response.headers.set(name, fields[name]!)
        return response
      },
      {
        realm: options.realm,
        clientAddress,
        onError: settings.errorsOnError ?? ((error) => fixtures.errors.push(error)),
      },
    )
    // The bridge answers every request itself, errors included: nothing is left to await.
    const listener = getRequestListener(handler)
    return { handler: (req, res) => void listener(req, res), authenticator: auth.authenticator }
  },
}
