import { requirePermission } from '@saiku/express'
import type { Express, Request, RequestHandler } from 'express'
import type { ApiResult } from '../api.js'
import type { EndpointStore } from './endpoints.js'
import { webhookRoutes } from './routes.js'

/** What app.ts reads bodies and answers with, shared so that these routes behave like the others. */
export interface RouteKit {
  readonly jsonBody: RequestHandler[]
  readonly route: (handler: (req: Request) => Promise<ApiResult>) => RequestHandler
  readonly routeWithoutBody: (handler: (req: Request) => Promise<ApiResult>) => RequestHandler
  readonly methodNotAllowed: (allowed: string[]) => RequestHandler
  /** Records a change that happened (a 2xx) in the Activity log, when there is one. */
  readonly recorded: (
    action: string,
    target: (req: Request, result: ApiResult) => string | null,
    handler: (req: Request) => Promise<ApiResult>,
  ) => (req: Request) => Promise<ApiResult>
}

/** /me/webhooks and below: reading needs webhooks:read, every change webhooks:write. */
export function registerWebhookRoutes(app: Express, endpoints: EndpointStore, kit: RouteKit): void {
  const routes = webhookRoutes(endpoints)
  const { jsonBody, route, routeWithoutBody, methodNotAllowed, recorded } = kit
  const read = requirePermission('webhooks:read')
  const write = requirePermission('webhooks:write')
  const id = (req: Request, name: string): string => String(req.params[name])
  app
    .route('/me/webhooks')
    .get(
      read,
      route((req) => routes.list(req.saiku!)),
    )
    .post(
      write,
      jsonBody,
      route(
        recorded(
          'webhook.added',
          (_req, result) => (result.body as { endpointId: string }).endpointId,
          (req) => routes.add(req.saiku!, req.body),
        ),
      ),
    )
    .all(methodNotAllowed(['GET', 'POST']))
  app
    .route('/me/webhooks/:endpointId')
    .delete(
      write,
      jsonBody,
      routeWithoutBody(
        recorded(
          'webhook.removed',
          (req) => id(req, 'endpointId'),
          (req) => routes.remove(req.saiku!, id(req, 'endpointId')),
        ),
      ),
    )
    .all(methodNotAllowed(['DELETE']))
  app
    .route('/me/webhooks/:endpointId/rotate-secret')
    .post(
      write,
      jsonBody,
      routeWithoutBody(
        recorded(
          'webhook.secret_rotated',
          (req) => id(req, 'endpointId'),
          (req) => routes.rotateSecret(req.saiku!, id(req, 'endpointId')),
        ),
      ),
    )
    .all(methodNotAllowed(['POST']))
  app
    .route('/me/webhooks/:endpointId/test')
    .post(
      write,
      jsonBody,
      routeWithoutBody((req) => routes.sendTestEvent(req.saiku!, id(req, 'endpointId'))),
    )
    .all(methodNotAllowed(['POST']))
  app
    .route('/me/webhooks/:endpointId/deliveries')
    .get(
      read,
      route((req) => routes.deliveries(req.saiku!, id(req, 'endpointId'))),
    )
    .all(methodNotAllowed(['GET']))
  app
    .route('/me/webhooks/:endpointId/deliveries/:deliveryId/redeliver')
    .post(
      write,
      jsonBody,
      routeWithoutBody((req) => routes.redeliver(req.saiku!, id(req, 'endpointId'), id(req, 'deliveryId'))),
    )
    .all(methodNotAllowed(['POST']))
}
