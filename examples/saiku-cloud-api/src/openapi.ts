// OpenAPI 3.1 description of the server's routes; test/openapi.test.ts checks real responses against it.

const error = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
})

const unauthorized = error('API key missing or invalid')
const paymentRequired = error('The tenant has no active subscription or trial')
const forbidden = error('The API key lacks the permission this route needs')
const rateLimited = {
  ...error('Per-minute or per-hour limit exceeded'),
  headers: {
    'Retry-After': {
      description: 'Seconds until the spent window admits again',
      schema: { type: 'integer', minimum: 1 },
    },
  },
}
// What every authenticated route can answer, whatever it does.
const common = {
  '400': error('More than one credential: two Authorization headers, or a key in the query string too'),
  '401': unauthorized,
  '429': rateLimited,
  '500': error('An unexpected failure; the message reveals nothing'),
  '503': error('The key store or limiter is unavailable'),
}
// What every route that reads a body can answer about it.
const withBody = {
  '400': error('Not valid JSON, an unknown field or a bad value, or more than one credential'),
  '413': error('The body is larger than 16 KiB'),
  '415': error('The body is not application/json'),
}

// The one grammar of a permission: "*", "area:*", or lower-case names joined by colons.
const permission = { type: 'string', maxLength: 64, pattern: '^(?:\\*|[a-z][a-z0-9_-]*(?::\\*|(?::[a-z0-9_-]+)*))$' }
const permissionList = {
  type: 'array',
  items: permission,
  description: 'At most 32 distinct permissions; repeats count once',
}

// What a dashboard may see of a key; a freshly minted key adds its secret.
const API_KEY_FIELDS = ['keyId', 'label', 'environment', 'permissions', 'createdAt', 'expiresAt', 'lastUsedAt'] as const
const apiKeyProperties = {
  keyId: { type: 'string', pattern: '^[0-9A-Za-z]{12}$' },
  label: { type: 'string' },
  environment: { type: 'string', enum: ['live', 'test'] },
  permissions: { type: 'array', items: { type: 'string' } },
  createdAt: { type: 'string', format: 'date-time' },
  expiresAt: { type: ['string', 'null'], format: 'date-time' },
  lastUsedAt: { type: ['string', 'null'], format: 'date-time' },
}

// The plan, its billing period and what is scheduled for the period's end (GET /me/billing and every change).
const BILLING_PLAN_FIELDS = [
  'tier',
  'billingAnchor',
  'currentPeriodStart',
  'currentPeriodEnd',
  'scheduledTier',
  'scheduledChangeAt',
  'cancelAtPeriodEnd',
] as const
const billingPlanProperties = {
  tier: { type: 'string', description: 'The plan whose limits apply now' },
  billingAnchor: {
    type: ['string', 'null'],
    format: 'date-time',
    description:
      'The day billing periods start from (the trial or plan start); periods start on its UTC day of each month, or a shorter month’s last day. Null: calendar months in UTC',
  },
  currentPeriodStart: {
    type: 'string',
    format: 'date-time',
    description: 'Start of the billing period that holds now',
  },
  currentPeriodEnd: {
    type: 'string',
    format: 'date-time',
    description: 'End of the billing period (excluded): when a scheduled change takes effect',
  },
  scheduledTier: { type: ['string', 'null'], description: 'A downgrade waiting for the period end' },
  scheduledChangeAt: {
    type: ['string', 'null'],
    format: 'date-time',
    description: 'When the scheduled downgrade or cancellation takes effect',
  },
  cancelAtPeriodEnd: { type: 'boolean', description: 'The subscription becomes canceled at scheduledChangeAt' },
}
const billingState = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Billing' } } },
})
// Plan changes and cancellation, each needing billing:write; open without a subscription, like the trial.
const billingChangePaths = {
  '/me/billing/plan': {
    post: {
      summary:
        'Change plan: an upgrade applies at once (counts kept), a downgrade at the end of the billing period; during a trial, either at once',
      requestBody: {
        required: true,
        content: {
          'application/json': {
            schema: {
              type: 'object',
              required: ['tier'],
              additionalProperties: false,
              properties: { tier: { type: 'string', enum: ['starter', 'team', 'business'] } },
            },
          },
        },
      },
      responses: {
        '200': billingState(
          'The plan after the change: changed, scheduled, a scheduled downgrade dropped, or unchanged when already so',
        ),
        '402': error('No active subscription or trial to change (none, canceled, past_due, trial_ended)'),
        '403': error(
          'The key lacks billing:write, the enterprise plan was asked for, or the tenant has custom limits: contact sales',
        ),
        '409': error(
          'The subscription ends at the period end (undo the cancellation first), or it changed during the request',
        ),
        ...common,
        ...withBody,
      },
    },
  },
  '/me/billing/cancel': {
    post: {
      summary: 'Cancel at the end of the billing period: the subscription then becomes canceled',
      responses: {
        '200': billingState('Cancellation scheduled (or already was)'),
        '403': forbidden,
        '409': error('No active subscription to cancel (a trial ends by itself), or it changed during the request'),
        ...common,
        ...withBody,
      },
    },
    delete: {
      summary: 'Undo the cancellation before the period ends',
      responses: {
        '200': billingState('Cancellation undone (or there was none)'),
        '403': forbidden,
        '409': error('The subscription has ended or is not active, or it changed during the request'),
        ...common,
        ...withBody,
      },
    },
  },
}

export const openApiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'Saiku Cloud API',
    version: '1.0.0',
    description:
      'Bearer API keys (`Authorization: Bearer sk_live_…`), per-tenant limits in two windows, and one JSON error shape.',
  },
  servers: [{ url: 'http://127.0.0.1:3000' }],
  security: [{ apiKey: [] }],
  paths: {
    '/.well-known/jwks.json': {
      get: {
        summary: "The public keys of the server's token signing key",
        security: [],
        responses: {
          '200': {
            description: 'A JSON Web Key Set',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Jwks' } } },
          },
        },
      },
    },
    '/openapi.json': {
      get: {
        summary: 'This document',
        security: [],
        responses: {
          '200': {
            description: 'The OpenAPI document',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/OpenApiDocument' } } },
          },
        },
      },
    },
    '/healthz': {
      get: {
        summary: 'Liveness: the process answers. Needs no key and is never counted against a limit',
        security: [],
        responses: {
          '200': {
            description: 'Alive',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Health' } } },
          },
        },
      },
    },
    '/me/tenant': {
      get: {
        summary: 'The tenant the API key belongs to',
        responses: {
          '200': {
            description: 'The tenant',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Tenant' } } },
          },
          '402': paymentRequired,
          ...common,
        },
      },
    },
    '/me/usage': {
      get: {
        summary:
          "The tenant's quota, use and reset of each window; reading it is neither counted nor refused by the limits",
        responses: {
          '200': {
            description:
              'Both windows, as the limiter counts them now, with the same RateLimit fields as every response',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Usage' } } },
          },
          '402': paymentRequired,
          '400': common['400'],
          '401': common['401'],
          '500': common['500'],
          '503': common['503'],
        },
      },
    },
    '/me/api-keys': {
      get: {
        summary: "The tenant's API keys (never their secrets)",
        responses: {
          '200': {
            description: 'Keys that are not revoked',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/ApiKeyList' } } },
          },
          '402': paymentRequired,
          '403': forbidden,
          ...common,
        },
      },
      post: {
        summary: 'Mint a key; its secret is in this response only',
        requestBody: {
          required: true,
          content: { 'application/json': { schema: { $ref: '#/components/schemas/CreateApiKey' } } },
        },
        responses: {
          '201': {
            description: 'The new key, with its secret',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/CreatedApiKey' } } },
          },
          '402': paymentRequired,
          '403': forbidden,
          ...common,
          ...withBody,
        },
      },
    },
    '/me/api-keys/{keyId}': {
      delete: {
        summary: 'Revoke a key',
        parameters: [
          { name: 'keyId', in: 'path', required: true, schema: { type: 'string', pattern: '^[0-9A-Za-z]{12}$' } },
        ],
        responses: {
          '204': { description: 'Revoked' },
          '402': paymentRequired,
          '403': forbidden,
          '404': error("No such key, or another tenant's"),
          ...common,
          ...withBody,
        },
      },
    },
    '/me/tokens': {
      post: {
        summary: 'Trade the calling API key for a short-lived JWT with at most its permissions',
        requestBody: {
          required: false,
          content: { 'application/json': { schema: { $ref: '#/components/schemas/TokenRequest' } } },
        },
        responses: {
          '201': {
            description: 'The token',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/IssuedToken' } } },
          },
          '402': paymentRequired,
          '403': error('A token cannot buy another, nor carry what the key does not hold'),
          ...common,
          ...withBody,
        },
      },
    },
    '/me/billing': {
      get: {
        summary: 'Subscription status; open without a subscription',
        responses: {
          '200': {
            description: 'Billing state',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Billing' } } },
          },
          ...common,
        },
      },
    },
    '/me/billing/trial': {
      post: {
        summary: 'Start the 14-day trial; open without a subscription',
        responses: {
          '201': {
            description: 'Trial started',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Billing' } } },
          },
          '403': forbidden,
          '409': error('Already subscribed, or the trial was used'),
          ...common,
          ...withBody,
        },
      },
    },
    ...billingChangePaths,
  },
  components: {
    securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'sk_live_… or sk_test_…' } },
    schemas: {
      Health: {
        type: 'object',
        required: ['status'],
        properties: { status: { const: 'ok' } },
        additionalProperties: false,
      },
      Error: {
        type: 'object',
        required: ['error', 'message'],
        additionalProperties: false,
        properties: {
          error: {
            type: 'string',
            enum: [
              'invalid_request',
              'unauthorized',
              'payment_required',
              'forbidden',
              'not_found',
              'method_not_allowed',
              'conflict',
              'payload_too_large',
              'unsupported_media_type',
              'rate_limited',
              'internal_error',
              'service_unavailable',
            ],
          },
          message: { type: 'string' },
        },
      },
      Tenant: {
        type: 'object',
        required: ['tenantId', 'tenantSlug', 'tier', 'connectionName'],
        additionalProperties: false,
        properties: {
          tenantId: { type: 'string' },
          tenantSlug: { type: 'string' },
          tier: { type: 'string' },
          connectionName: { type: 'string' },
        },
      },
      ApiKey: {
        type: 'object',
        required: [...API_KEY_FIELDS],
        additionalProperties: false,
        properties: apiKeyProperties,
      },
      ApiKeyList: {
        type: 'object',
        required: ['keys'],
        additionalProperties: false,
        properties: { keys: { type: 'array', items: { $ref: '#/components/schemas/ApiKey' } } },
      },
      CreateApiKey: {
        type: 'object',
        required: ['label'],
        additionalProperties: false,
        properties: {
          label: {
            type: 'string',
            minLength: 1,
            maxLength: 100,
            pattern: '^[^\\p{Cc}\\p{Cf}]*$',
            description: 'No control or format characters',
          },
          permissions: {
            ...permissionList,
            description: "Default: the calling key's own. At most 32 distinct permissions; repeats count once",
          },
          expiresAt: {
            type: ['string', 'null'],
            format: 'date-time',
            description: "RFC 3339, from 1970 to 9999, in the future; at most the calling key's own expiry",
          },
        },
      },
      CreatedApiKey: {
        type: 'object',
        required: [...API_KEY_FIELDS, 'secret'],
        additionalProperties: false,
        properties: {
          ...apiKeyProperties,
          lastUsedAt: { type: 'null' },
          secret: { type: 'string', pattern: '^sk_(live|test)_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}$' },
        },
      },
      OpenApiDocument: { type: 'object', required: ['openapi', 'info', 'paths'] },
      Jwks: {
        type: 'object',
        required: ['keys'],
        properties: {
          keys: { type: 'array', items: { type: 'object', required: ['kty', 'kid'], not: { required: ['d'] } } },
        },
      },
      TokenRequest: {
        type: 'object',
        additionalProperties: false,
        properties: {
          permissions: {
            ...permissionList,
            description: "Default: the key's own. At most 32 distinct permissions; repeats count once",
          },
          ttlSeconds: { type: 'integer', minimum: 1, maximum: 900 },
        },
      },
      IssuedToken: {
        type: 'object',
        required: ['accessToken', 'tokenType', 'expiresIn', 'permissions'],
        additionalProperties: false,
        properties: {
          accessToken: { type: 'string' },
          tokenType: { const: 'Bearer' },
          expiresIn: { type: 'integer' },
          permissions: { type: 'array', items: { type: 'string' } },
        },
      },
      WindowUsage: {
        type: 'object',
        required: ['window', 'quota', 'used', 'remaining', 'resetSeconds'],
        additionalProperties: false,
        properties: {
          window: { type: 'string', enum: ['minute', 'hour'] },
          quota: { type: 'integer', minimum: 1 },
          used: { type: 'integer', minimum: 0 },
          remaining: { type: 'integer', minimum: 0 },
          resetSeconds: { type: 'integer', minimum: 1, description: 'Seconds until the window starts over' },
        },
      },
      Usage: {
        type: 'object',
        required: ['tenantId', 'limits', 'minute', 'hour'],
        additionalProperties: false,
        properties: {
          tenantId: { type: 'string' },
          limits: {
            type: 'object',
            required: ['perMinute', 'perHour'],
            additionalProperties: false,
            properties: { perMinute: { type: 'integer', minimum: 1 }, perHour: { type: 'integer', minimum: 1 } },
          },
          minute: { $ref: '#/components/schemas/WindowUsage' },
          hour: { $ref: '#/components/schemas/WindowUsage' },
        },
      },
      Billing: {
        type: 'object',
        required: ['status', 'trialEndsAt', 'trialAvailable', ...BILLING_PLAN_FIELDS],
        additionalProperties: false,
        properties: {
          status: { type: 'string', enum: ['active', 'trialing', 'trial_ended', 'past_due', 'canceled', 'none'] },
          trialEndsAt: { type: ['string', 'null'], format: 'date-time' },
          trialAvailable: { type: 'boolean' },
          ...billingPlanProperties,
        },
      },
    },
  },
} as const
