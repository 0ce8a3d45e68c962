import { MAX_URL_LENGTH } from './address-guard.js'
import { WEBHOOK_EVENT_TYPES } from './events.js'

// The /me/webhooks routes in the OpenAPI document: openapi.ts spreads these into its paths and schemas.

/** What openapi.ts describes every route with. */
interface Parts {
  readonly error: (description: string) => object
  readonly common: Record<string, object>
  readonly withBody: Record<string, object>
  readonly paymentRequired: object
}

const endpointIdParameter = {
  name: 'endpointId',
  in: 'path',
  required: true,
  schema: { type: 'string', pattern: '^ep_[A-Za-z0-9_-]{16}$' },
}
const deliveryIdParameter = { name: 'deliveryId', in: 'path', required: true, schema: { type: 'string' } }
const json = (ref: string) => ({ 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } })
const time = { type: 'string', format: 'date-time' }
const nullableTime = { type: ['string', 'null'], format: 'date-time' }
const eventList = {
  type: 'array',
  minItems: 1,
  items: { type: 'string', enum: ['*', ...WEBHOOK_EVENT_TYPES] },
  description: 'The event types sent to the endpoint, or ["*"] for all',
}

const endpointProperties = {
  endpointId: { type: 'string' },
  url: { type: 'string', maxLength: MAX_URL_LENGTH },
  description: { type: 'string' },
  events: { type: 'array', items: { type: 'string' } },
  state: {
    type: 'string',
    enum: ['active', 'failing', 'disabled'],
    description: 'failing: a delivery was given up after its retries; disabled: the endpoint answered 410 Gone',
  },
  stateReason: { type: ['string', 'null'] },
  createdAt: time,
  previousSecretUntil: {
    ...nullableTime,
    description: 'Until when the secret a rotation replaced still signs deliveries beside the new one',
  },
}
const ENDPOINT_FIELDS = Object.keys(endpointProperties)

export const webhookSchemas = {
  WebhookEndpoint: {
    type: 'object',
    required: ENDPOINT_FIELDS,
    additionalProperties: false,
    properties: endpointProperties,
  },
  WebhookEndpointWithSecret: {
    type: 'object',
    required: [...ENDPOINT_FIELDS, 'secret'],
    additionalProperties: false,
    properties: {
      ...endpointProperties,
      secret: {
        type: 'string',
        pattern: '^whsec_',
        description: 'The signing secret (Standard Webhooks), in this response only',
      },
    },
  },
  WebhookEndpointList: {
    type: 'object',
    required: ['endpoints'],
    additionalProperties: false,
    properties: { endpoints: { type: 'array', items: { $ref: '#/components/schemas/WebhookEndpoint' } } },
  },
  NewWebhookEndpoint: {
    type: 'object',
    required: ['url'],
    additionalProperties: false,
    properties: {
      url: {
        type: 'string',
        maxLength: MAX_URL_LENGTH,
        description: 'https; an address inside (private, loopback, link-local) is refused',
      },
      events: eventList,
      description: { type: 'string', maxLength: 100 },
    },
  },
  WebhookDeliveryList: {
    type: 'object',
    required: ['deliveries'],
    additionalProperties: false,
    properties: {
      deliveries: {
        type: 'array',
        items: {
          type: 'object',
          required: ['deliveryId', 'eventId', 'eventType', 'state', 'createdAt', 'nextAttemptAt', 'attempts'],
          additionalProperties: false,
          properties: {
            deliveryId: { type: 'string' },
            eventId: { type: 'string', description: 'The webhook-id header: the same on every attempt' },
            eventType: { type: 'string' },
            state: { type: 'string', enum: ['pending', 'delivered', 'failed'] },
            createdAt: time,
            nextAttemptAt: nullableTime,
            attempts: {
              type: 'array',
              items: {
                type: 'object',
                required: ['attempt', 'attemptedAt', 'status', 'durationMs', 'error'],
                additionalProperties: false,
                properties: {
                  attempt: { type: 'integer', minimum: 1 },
                  attemptedAt: time,
                  status: { type: ['integer', 'null'], description: 'null: no answer (refused address, timeout)' },
                  durationMs: { type: 'integer', minimum: 0 },
                  error: { type: ['string', 'null'] },
                },
              },
            },
          },
        },
      },
    },
  },
  WebhookDeliveryQueued: {
    type: 'object',
    required: ['deliveryId'],
    additionalProperties: false,
    properties: { deliveryId: { type: 'string' } },
  },
}

export function webhookPaths({ error, common, withBody, paymentRequired }: Parts) {
  const notFound = error("No such endpoint, or another tenant's")
  return {
    '/me/webhooks': {
      get: {
        summary: "The tenant's webhook endpoints, never their secrets (needs webhooks:read)",
        responses: {
          '200': { description: 'The endpoints', content: json('WebhookEndpointList') },
          '402': paymentRequired,
          ...common,
        },
      },
      post: {
        summary: 'Add a webhook endpoint; its signing secret is in this response only (needs webhooks:write)',
        requestBody: { required: true, content: json('NewWebhookEndpoint') },
        responses: {
          '201': { description: 'The endpoint and its secret', content: json('WebhookEndpointWithSecret') },
          '402': paymentRequired,
          ...common,
          ...withBody,
        },
      },
    },
    '/me/webhooks/{endpointId}': {
      delete: {
        summary: 'Remove an endpoint and its delivery log (needs webhooks:write)',
        parameters: [endpointIdParameter],
        responses: {
          '204': { description: 'Removed' },
          '402': paymentRequired,
          '404': notFound,
          ...common,
          ...withBody,
        },
      },
    },
    '/me/webhooks/{endpointId}/rotate-secret': {
      post: {
        summary:
          'A new signing secret, in this response only; the old one also signs for 24 hours (needs webhooks:write)',
        parameters: [endpointIdParameter],
        responses: {
          '200': { description: 'The endpoint and its new secret', content: json('WebhookEndpointWithSecret') },
          '402': paymentRequired,
          '404': notFound,
          ...common,
          ...withBody,
        },
      },
    },
    '/me/webhooks/{endpointId}/test': {
      post: {
        summary: 'Send a webhook.test event to the endpoint now (needs webhooks:write)',
        parameters: [endpointIdParameter],
        responses: {
          '202': { description: 'Queued; see the delivery log', content: json('WebhookDeliveryQueued') },
          '402': paymentRequired,
          '404': notFound,
          '409': error('The endpoint is disabled (it answered 410 Gone)'),
          ...common,
          ...withBody,
        },
      },
    },
    '/me/webhooks/{endpointId}/deliveries': {
      get: {
        summary: "The endpoint's latest deliveries, each attempt's time, status and duration (needs webhooks:read)",
        parameters: [endpointIdParameter],
        responses: {
          '200': { description: 'The delivery log, newest first', content: json('WebhookDeliveryList') },
          '402': paymentRequired,
          '404': notFound,
          ...common,
        },
      },
    },
    '/me/webhooks/{endpointId}/deliveries/{deliveryId}/redeliver': {
      post: {
        summary: 'Send a delivery again now, with the same webhook-id (needs webhooks:write)',
        parameters: [endpointIdParameter, deliveryIdParameter],
        responses: {
          '202': { description: 'Queued; see the delivery log', content: json('WebhookDeliveryQueued') },
          '402': paymentRequired,
          '404': error("No such endpoint or delivery, another tenant's, or an attempt of it under way"),
          '409': error('The endpoint is disabled (it answered 410 Gone)'),
          ...common,
          ...withBody,
        },
      },
    },
  }
}
