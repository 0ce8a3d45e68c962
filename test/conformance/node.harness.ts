import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  ownedByTenant,
  requirePermission,
  saikuAuth,
  saikuUnverified,
  SaikuHttpError,
  withSaiku,
  type SaikuPrincipal,
} from '@saiku/node'
import type { AdapterHarness } from './harness.js'

const NO_MOUNT_POINT =
  'a node:http server has no router to mount in: saikuAuth sees the whole path, so exemptions and the cost function name it'

function json(res: ServerResponse, body: unknown): void {
  res.setHeader('content-type', 'application/json; charset=utf-8')
  res.end(JSON.stringify(body))
}

export const nodeHarness: AdapterHarness = {
  name: 'node:http',
  notApplicable: {
    'adapter conformance: node:http: CORS preflights > below a mount point too':
      'a node:http server has no router to mount in: a preflight is matched on the whole path',
    'adapter conformance: node:http: per-route cost > asks the cost function once per request with the method, the mounted path and the tenant':
      NO_MOUNT_POINT,
    'adapter conformance: node:http: subscription > matches exempt paths below the mount point when the middleware is mounted in a router':
      NO_MOUNT_POINT,
  },
  createApp(store, options, fixtures, settings = {}) {
    const auth = saikuAuth(
      store,
      settings.trustProxy === true ? { ...options, clientAddressHeader: 'x-forwarded-for' } : options,
    )
    const second = settings.secondInstance === true ? saikuAuth(store, options) : undefined
    // What has no principal to ask challenges the authenticator's realm.
    const { realm } = options
    const canReadKeys = requirePermission('keys:read', { realm })
    const canWriteKeys = requirePermission('keys:write', { realm })
    const onError = settings.errorsOnError ?? ((error: unknown) => void fixtures.errors.push(error))

    // Routed as Express routes by default (any case, a trailing slash ignored, an absolute-form target).
    const route = async (req: IncomingMessage, res: ServerResponse, first: SaikuPrincipal | null): Promise<void> => {
      let principal: SaikuPrincipal | null | undefined = first
      // Mounted twice, or a second instance after the first: each call on the same request, as nested helpers would.
      if (settings.mountTwice === true) principal = await auth(req, res)
      if (second !== undefined && principal !== undefined) principal = await second(req, res)
      if (principal === undefined) return
      const pathname = new URL(req.url!, 'http://localhost').pathname.replace(/(.)\/$/, '$1')
      const path = pathname.toLowerCase()
      const [, resource, id] = /^\/me\/(api-keys|projects)\/([^/]+)$/i.exec(pathname) ?? []
      if (req.method === 'GET' && path === '/me/tenant') {
        fixtures.hits.tenant++
        return json(res, principal!.tenant)
      }
      if (req.method === 'OPTIONS' && path === '/me/tenant') {
        fixtures.hits.preflight++
        res.writeHead(204).end()
        return
      }
      if (req.method === 'GET' && path === '/me/whoami')
        return json(res, {
          tenantId: principal?.tenant.tenantId ?? null,
          overLimit: principal?.rateLimit?.admitted === false,
          unverified: saikuUnverified(req) ?? null,
        })
      if (req.method === 'GET' && path === '/me/billing') return json(res, { status: principal!.subscription.status })
      if (req.method === 'GET' && path === '/me/api-keys') {
        if (!canReadKeys(principal, res)) return
        return json(res, { keys: await auth.authenticator.keys.list(principal!.tenant.tenantId) })
      }
      if (req.method === 'DELETE' && resource?.toLowerCase() === 'api-keys') {
        if (!canWriteKeys(principal, res)) return
        const revoked = await auth.authenticator.keys.revoke(principal!.tenant.tenantId, decodeURIComponent(id!))
        if (!revoked) throw new SaikuHttpError('not_found')
        res.statusCode = 204
        return void res.end()
      }
      if (req.method === 'GET' && resource?.toLowerCase() === 'projects')
        return json(res, ownedByTenant(principal!, fixtures.projects.get(decodeURIComponent(id!))))
      if (req.method === 'GET' && path === '/me/reauthenticate') throw new SaikuHttpError('unauthorized')
      if (req.method === 'GET' && path === '/me/boom') {
        res.setHeader('content-length', '5')
        res.setHeader('etag', '"x"')
        throw new Error('database password is hunter2')
      }
      if (req.method === 'GET' && path === '/me/fail-after-write') {
        res.statusCode = 200
        res.write('{"partial":')
        throw new Error('failed after the response started')
      }
      throw new SaikuHttpError('not_found')
    }
    return {
      handler: withSaiku(auth, route, { realm, onError }),
      authenticator: auth.authenticator,
    }
  },
}
