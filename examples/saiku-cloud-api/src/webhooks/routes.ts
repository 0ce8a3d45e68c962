import { SaikuHttpError, type SaikuPrincipal } from '@saiku/core'
import { bodyFields, type ApiResult } from '../api.js'
import {
  WebhookInputError,
  type DeliveryAttempt,
  type EndpointStore,
  type WebhookDelivery,
  type WebhookEndpoint,
} from './endpoints.js'

// The webhook routes' logic, framework-neutral like api.ts: every mutation of an endpoint (add, remove, rotate
// its secret, send a test event, redeliver) is here, so that a guard in front of them (re-authentication) is put
// in one place. app.ts maps the Express routes onto these.

export function endpointView(endpoint: WebhookEndpoint) {
  return {
    endpointId: endpoint.endpointId,
    url: endpoint.url,
    description: endpoint.description,
    events: [...endpoint.events],
    state: endpoint.state,
    stateReason: endpoint.stateReason,
    createdAt: endpoint.createdAt.toISOString(),
    previousSecretUntil: endpoint.previousSecretUntil?.toISOString() ?? null,
  }
}

const attemptView = (attempt: DeliveryAttempt) => ({
  attempt: attempt.attempt,
  attemptedAt: attempt.attemptedAt.toISOString(),
  status: attempt.status,
  durationMs: attempt.durationMs,
  error: attempt.error,
})

const deliveryView = (delivery: WebhookDelivery) => ({
  deliveryId: delivery.deliveryId,
  eventId: delivery.eventId,
  eventType: delivery.eventType,
  state: delivery.state,
  createdAt: delivery.createdAt.toISOString(),
  nextAttemptAt: delivery.nextAttemptAt?.toISOString() ?? null,
  attempts: delivery.attempts.map(attemptView),
})

/** A refused input as the API's 400. */
function asHttpError(error: unknown): never {
  if (error instanceof WebhookInputError) throw new SaikuHttpError('invalid_request', error.message)
  throw error
}

const tenantOf = (principal: SaikuPrincipal): string => principal.tenant.tenantId

export function webhookRoutes(endpoints: EndpointStore) {
  async function owned(principal: SaikuPrincipal, endpointId: string): Promise<WebhookEndpoint> {
    const endpoint = await endpoints.find(tenantOf(principal), endpointId)
    // Another tenant's endpoint is reported exactly like a missing one.
    if (endpoint === null) throw new SaikuHttpError('not_found', 'No such webhook endpoint.')
    return endpoint
  }
  return {
    async list(principal: SaikuPrincipal): Promise<ApiResult> {
      return { status: 200, body: { endpoints: (await endpoints.list(tenantOf(principal))).map(endpointView) } }
    },

    async add(principal: SaikuPrincipal, body: unknown): Promise<ApiResult> {
      const fields = bodyFields(body, ['url', 'events', 'description'])
      if (fields.url === undefined) throw new SaikuHttpError('invalid_request', 'url is required.')
      const added = await endpoints
        .add(tenantOf(principal), { url: fields.url, events: fields.events, description: fields.description })
        .catch(asHttpError)
      // The secret is in this answer only.
      return { status: 201, body: { ...endpointView(added.endpoint), secret: added.secret } }
    },

    async remove(principal: SaikuPrincipal, endpointId: string): Promise<ApiResult> {
      if (!(await endpoints.remove(tenantOf(principal), endpointId)))
        throw new SaikuHttpError('not_found', 'No such webhook endpoint.')
      return { status: 204 }
    },

    async rotateSecret(principal: SaikuPrincipal, endpointId: string): Promise<ApiResult> {
      const rotated = await endpoints.rotateSecret(tenantOf(principal), endpointId)
      if (rotated === null) throw new SaikuHttpError('not_found', 'No such webhook endpoint.')
      return { status: 200, body: { ...endpointView(rotated.endpoint), secret: rotated.secret } }
    },

    async deliveries(principal: SaikuPrincipal, endpointId: string): Promise<ApiResult> {
      await owned(principal, endpointId)
      const log = await endpoints.deliveries(tenantOf(principal), endpointId)
      return { status: 200, body: { deliveries: log.map(deliveryView) } }
    },

    async sendTestEvent(principal: SaikuPrincipal, endpointId: string): Promise<ApiResult> {
      const endpoint = await owned(principal, endpointId)
      if (endpoint.state === 'disabled')
        throw new SaikuHttpError('conflict', 'This endpoint is disabled; remove it and add it again.')
      const deliveryId = await endpoints.sendTestEvent(tenantOf(principal), endpointId)
      return { status: 202, body: { deliveryId } }
    },

    async redeliver(principal: SaikuPrincipal, endpointId: string, deliveryId: string): Promise<ApiResult> {
      const endpoint = await owned(principal, endpointId)
      if (endpoint.state === 'disabled')
        throw new SaikuHttpError('conflict', 'This endpoint is disabled; remove it and add it again.')
      if (!deliveryId.startsWith(`${endpointId}_`) || !(await endpoints.redeliver(tenantOf(principal), deliveryId)))
        throw new SaikuHttpError('not_found', 'No such delivery, or it is being sent now.')
      return { status: 202, body: { deliveryId } }
    },
  }
}
