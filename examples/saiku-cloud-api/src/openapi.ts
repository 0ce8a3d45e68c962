// OpenAPI 3.1 description of the server's routes; test/openapi.test.ts checks real responses against it.
import { webhookPaths, webhookSchemas } from './webhooks/openapi.js'

const error = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
})

const unauthorized = error('API key missing or invalid')
const paymentRequired = error('The tenant has no active subscription or trial')
const forbidden = error(
  'The API key lacks the permission this route needs, or is used from an address its allowedAddresses leave out',
)
const rateLimited = {
  ...error('A per-minute or per-hour limit, or a daily or monthly quota, exceeded'),
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
  // A key (or a token exchanged from one) used from an address its allowlist leaves out: on every route.
  '403': forbidden,
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
const API_KEY_FIELDS = [
  'keyId',
  'label',
  'environment',
  'permissions',
  'createdAt',
  'expiresAt',
  'lastUsedAt',
  'allowedAddresses',
] as const
const keyIdParameter = {
  name: 'keyId',
  in: 'path',
  required: true,
  schema: { type: 'string', pattern: '^[0-9A-Za-z]{12}$' },
}
const label = {
  type: 'string',
  minLength: 1,
  maxLength: 100,
  pattern: '^[^\\p{Cc}\\p{Cf}]*$',
  description: 'No control or format characters',
}
const allowedAddressesInput = {
  type: ['array', 'null'],
  maxItems: 32,
  items: { type: 'string', maxLength: 49 },
  description:
    'IPv4 and IPv6 addresses and CIDR ranges ("203.0.113.0/24", "2001:db8::/32") the key works from; no bits set past a prefix, no zone IDs, IPv4-mapped ranges written as IPv4. Null or empty: any address',
}
const apiKeyProperties = {
  keyId: { type: 'string', pattern: '^[0-9A-Za-z]{12}$' },
  label: { type: 'string' },
  environment: { type: 'string', enum: ['live', 'test'] },
  permissions: { type: 'array', items: { type: 'string' } },
  createdAt: { type: 'string', format: 'date-time' },
  expiresAt: { type: ['string', 'null'], format: 'date-time' },
  lastUsedAt: { type: ['string', 'null'], format: 'date-time' },
  allowedAddresses: {
    type: 'array',
    maxItems: 32,
    items: { type: 'string' },
    description: 'The addresses the key works from, in canonical form; empty: any address',
  },
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
        ...common,
        ...withBody,
        '200': billingState(
          'The plan after the change: changed, scheduled, a scheduled downgrade dropped, or unchanged when already so',
        ),
        '402': error('No active subscription or trial to change (none, canceled, past_due, trial_ended)'),
        '403': error(
          'The key lacks billing:write or is used from an address its allowedAddresses leave out, the enterprise plan was asked for, or the tenant has custom limits: contact sales',
        ),
        '409': error(
          'The subscription ends at the period end (undo the cancellation first), or it changed during the request',
        ),
      },
    },
  },
  '/me/billing/cancel': {
    post: {
      summary: 'Cancel at the end of the billing period: the subscription then becomes canceled',
      responses: {
        ...common,
        ...withBody,
        '200': billingState('Cancellation scheduled (or already was)'),
        '403': forbidden,
        '409': error('No active subscription to cancel (a trial ends by itself), or it changed during the request'),
      },
    },
    delete: {
      summary: 'Undo the cancellation before the period ends',
      responses: {
        ...common,
        ...withBody,
        '200': billingState('Cancellation undone (or there was none)'),
        '403': forbidden,
        '409': error('The subscription has ended or is not active, or it changed during the request'),
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
    '/secret-scanning/github': {
      post: {
        summary:
          "GitHub's secret scanning alerts: each token checked (checksum, then the store); a live key of ours is revoked. Only when GITHUB_SECRET_SCANNING_KEYS_URL is set",
        security: [],
        parameters: [
          {
            name: 'Github-Public-Key-Identifier',
            in: 'header',
            required: true,
            description: "Which of GitHub's published secret scanning keys signed the body",
            schema: { type: 'string', maxLength: 256 },
          },
          {
            name: 'Github-Public-Key-Signature',
            in: 'header',
            required: true,
            description: "Base64 of the DER ECDSA P-256 signature, with SHA-256, of the body's exact bytes",
            schema: { type: 'string', maxLength: 1024 },
          },
        ],
        requestBody: {
          required: true,
          content: { 'application/json': { schema: { $ref: '#/components/schemas/SecretScanningAlert' } } },
        },
        responses: {
          '200': {
            description:
              'Each token, in order: true_positive for a key of ours (now revoked), false_positive otherwise',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/SecretScanningVerdicts' } } },
          },
          '400': error('The signed body is not JSON, or not a list of {token, type, url?, source?}'),
          '401': error("Unsigned, or the signature does not verify with GitHub's published keys"),
          '413': error('More than 1000 tokens, or a body over 512 KiB'),
          '429': {
            ...error('More than 60 requests a minute from this address'),
            headers: {
              'Retry-After': {
                description: 'Seconds until the address may post again',
                schema: { type: 'integer', minimum: 1 },
              },
            },
          },
          '500': error('An unexpected failure; the message reveals nothing'),
          '503': error(
            "GitHub's keys could not be fetched, or the key store is unavailable: GitHub sends the alert again",
          ),
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
              'Every window (minute, hour, and the day and month quotas when the plan has them), as the limiter counts them now, with the same RateLimit fields as every response',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/Usage' } } },
          },
          '402': paymentRequired,
          '400': common['400'],
          '401': common['401'],
          '403': common['403'],
          '500': common['500'],
          '503': common['503'],
        },
      },
    },
    '/me/usage/history': {
      get: {
        summary:
          "The tenant's requests per hour or UTC day, admitted and refused by reason, in total and by key; reading it is neither counted nor refused by the limits",
        parameters: [
          {
            name: 'from',
            in: 'query',
            description:
              'Start (RFC 3339), rounded down to the hour or day. Default: 24 points (30 by day), the last holding to',
            schema: { type: 'string', format: 'date-time' },
          },
          {
            name: 'to',
            in: 'query',
            description: 'End, excluded (RFC 3339), rounded up to the hour or day. Default: now',
            schema: { type: 'string', format: 'date-time' },
          },
          {
            name: 'granularity',
            in: 'query',
            description: 'One point per hour or per UTC day; at most 2400 points. Default hour',
            schema: { type: 'string', enum: ['hour', 'day'] },
          },
          { name: 'keyId', in: 'query', description: "Only this key's requests", schema: { type: 'string' } },
        ],
        responses: {
          '200': {
            description:
              'One point per hour or day of the range (zeros included), the totals, and the keys with requests, most first; up to a few seconds behind, as servers write their counts in batches',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/UsageHistory' } } },
          },
          '400': error(
            'An unknown or repeated query parameter, a bad date, granularity or key ID, to not after from, or too many points; or more than one credential',
          ),
          '401': common['401'],
          '402': paymentRequired,
          '403': common['403'],
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
          ...common,
          ...withBody,
        },
      },
    },
    '/me/api-keys/{keyId}': {
      patch: {
        summary: "Change a key's label or allowed addresses (needs keys:write)",
        parameters: [keyIdParameter],
        requestBody: {
          required: true,
          content: { 'application/json': { schema: { $ref: '#/components/schemas/UpdateApiKey' } } },
        },
        responses: {
          '200': {
            description: 'The key as it is now; every server refuses other addresses within the revocation bound',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/ApiKey' } } },
          },
          '402': paymentRequired,
          '404': error("No such key, or another tenant's, revoked or expired"),
          ...common,
          ...withBody,
        },
      },
      delete: {
        summary: 'Revoke a key',
        parameters: [keyIdParameter],
        responses: {
          '204': { description: 'Revoked' },
          '402': paymentRequired,
          '404': error("No such key, or another tenant's"),
          ...common,
          ...withBody,
        },
      },
    },
    '/me/api-keys/{keyId}/rotate': {
      post: {
        summary:
          'Mint a successor with the same label, permissions, environment, allowed addresses and expiry; the old key ends after graceSeconds',
        parameters: [keyIdParameter],
        requestBody: {
          required: true,
          content: { 'application/json': { schema: { $ref: '#/components/schemas/RotateApiKey' } } },
        },
        responses: {
          ...common,
          ...withBody,
          '201': {
            description: 'The new key, with its secret (in this response only), and when the old one ends',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/RotatedApiKey' } } },
          },
          '402': paymentRequired,
          '403': error(
            'The calling key lacks keys:write, holds less than the key it would rotate (permissions, expiry, environment), or is used from an address its allowedAddresses leave out',
          ),
          '404': error("No such key, or another tenant's, revoked or expired"),
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
          ...common,
          ...withBody,
          '201': {
            description: 'The token',
            content: { 'application/json': { schema: { $ref: '#/components/schemas/IssuedToken' } } },
          },
          '402': paymentRequired,
          '403': error(
            'A token cannot buy another, nor carry what the key does not hold; or the key is used from an address its allowedAddresses leave out',
          ),
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
          '409': error('Already subscribed, or the trial was used'),
          ...common,
          ...withBody,
        },
      },
    },
    ...billingChangePaths,
    ...webhookPaths({ error, common, withBody, paymentRequired }),
  },
  components: {
    securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'sk_live_… or sk_test_…' } },
    schemas: {
      SecretScanningAlert: {
        type: 'array',
        maxItems: 1000,
        items: {
          type: 'object',
          required: ['token', 'type'],
          properties: {
            token: { type: 'string', minLength: 1, maxLength: 1024, description: 'What GitHub found' },
            type: { type: 'string', description: 'The token type the pattern was registered under' },
            url: { type: ['string', 'null'], description: 'Where it was found' },
            source: { type: ['string', 'null'], description: 'What was scanned: content, commit, npm, …' },
          },
        },
      },
      SecretScanningVerdicts: {
        type: 'array',
        items: {
          type: 'object',
          required: ['token_hash', 'token_type', 'label'],
          additionalProperties: false,
          properties: {
            token_hash: { type: 'string', pattern: '^[0-9a-f]{64}$', description: 'Hex SHA-256 of the token' },
            token_type: { type: 'string' },
            label: { enum: ['true_positive', 'false_positive'] },
          },
        },
      },
      ...webhookSchemas,
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
          allowedAddresses: allowedAddressesInput,
        },
      },
      UpdateApiKey: {
        type: 'object',
        minProperties: 1,
        additionalProperties: false,
        properties: { label, allowedAddresses: allowedAddressesInput },
      },
      RotateApiKey: {
        type: 'object',
        required: ['graceSeconds'],
        additionalProperties: false,
        properties: {
          graceSeconds: {
            type: 'integer',
            minimum: 0,
            maximum: 2_592_000,
            description: 'How long the old key keeps working: 0 ends it at once, at most 30 days',
          },
        },
      },
      RotatedApiKey: {
        type: 'object',
        required: [...API_KEY_FIELDS, 'secret', 'previousKey'],
        additionalProperties: false,
        properties: {
          ...apiKeyProperties,
          lastUsedAt: { type: 'null' },
          secret: { type: 'string', pattern: '^sk_(live|test)_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}$' },
          previousKey: {
            type: 'object',
            required: ['keyId', 'expiresAt'],
            additionalProperties: false,
            properties: {
              keyId: { type: 'string', pattern: '^[0-9A-Za-z]{12}$' },
              expiresAt: {
                type: ['string', 'null'],
                format: 'date-time',
                description: 'When the old key stops working',
              },
            },
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
          window: { type: 'string', enum: ['minute', 'hour', 'day', 'month'] },
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
            properties: {
              perMinute: { type: 'integer', minimum: 1 },
              perHour: { type: 'integer', minimum: 1 },
              perDay: { type: 'integer', minimum: 1, description: 'Quota per UTC day, when the plan has one' },
              perMonth: { type: 'integer', minimum: 1, description: 'Quota per billing month, when the plan has one' },
              monthStartDay: {
                type: 'integer',
                minimum: 1,
                maximum: 31,
                description:
                  "With perMonth: the UTC day of the month each period starts (the billing anchor's; a shorter month's last day)",
              },
            },
          },
          minute: { $ref: '#/components/schemas/WindowUsage' },
          hour: { $ref: '#/components/schemas/WindowUsage' },
          day: { $ref: '#/components/schemas/WindowUsage', description: 'The UTC day, when the plan has perDay' },
          month: {
            $ref: '#/components/schemas/WindowUsage',
            description: 'The billing month, when the plan has perMonth',
          },
        },
      },
      UsageCounts: {
        type: 'object',
        required: ['admitted', 'rateLimited', 'quotaExceeded', 'forbidden', 'paymentRequired'],
        properties: {
          admitted: { type: 'integer', minimum: 0 },
          rateLimited: { type: 'integer', minimum: 0, description: '429 of the minute or hour window' },
          quotaExceeded: { type: 'integer', minimum: 0, description: '429 of the day or month quota' },
          forbidden: { type: 'integer', minimum: 0, description: '403: used from an address the key does not allow' },
          paymentRequired: { type: 'integer', minimum: 0, description: '402: no active subscription or trial' },
        },
      },
      UsageHistory: {
        type: 'object',
        required: ['tenantId', 'granularity', 'from', 'to', 'points', 'totals', 'keys'],
        additionalProperties: false,
        properties: {
          tenantId: { type: 'string' },
          granularity: { type: 'string', enum: ['hour', 'day'] },
          from: { type: 'string', format: 'date-time' },
          to: { type: 'string', format: 'date-time' },
          points: {
            type: 'array',
            items: {
              allOf: [{ $ref: '#/components/schemas/UsageCounts' }],
              type: 'object',
              required: ['start'],
              properties: { start: { type: 'string', format: 'date-time' } },
            },
          },
          totals: { $ref: '#/components/schemas/UsageCounts' },
          keys: {
            type: 'array',
            items: {
              allOf: [{ $ref: '#/components/schemas/UsageCounts' }],
              type: 'object',
              required: ['keyId'],
              properties: { keyId: { type: ['string', 'null'], description: 'Null: a credential without a key ID' } },
            },
          },
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
