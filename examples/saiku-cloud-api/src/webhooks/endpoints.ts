import { randomBytes } from 'node:crypto'
import { labelProblem } from '@saiku/core/store'
import { webhookUrlProblem, type AddressPolicy } from './address-guard.js'
import { isWebhookEventType, TEST_EVENT_TYPE, WEBHOOK_EVENT_TYPES, type WebhookEventType } from './events.js'
import { newSigningSecret } from './signing.js'
import type { WebhookSql } from './sql.js'
import { newEventId } from '@saiku/core/store'

// A tenant's webhook endpoints and their delivery log: what the API, the dashboard and the CLI share.

/** At most this many endpoints per tenant. */
export const MAX_ENDPOINTS_PER_TENANT = 10
/** How long a secret replaced by a rotation still signs deliveries beside the new one. */
export const SECRET_OVERLAP_MS = 24 * 60 * 60 * 1000

export type EndpointState = 'active' | 'failing' | 'disabled'

/** An endpoint as its tenant sees it: never its secret, which is shown once, when made. */
export interface WebhookEndpoint {
  readonly endpointId: string
  readonly url: string
  readonly description: string
  /** The event types it takes, or `['*']` for all. */
  readonly events: readonly string[]
  readonly state: EndpointState
  /** Why it is failing or disabled; null when active. */
  readonly stateReason: string | null
  readonly createdAt: Date
  /** When the secret a rotation replaced stops signing; null when only one secret signs. */
  readonly previousSecretUntil: Date | null
}

export interface DeliveryAttempt {
  readonly attempt: number
  readonly attemptedAt: Date
  /** The HTTP status, or null when none came (refused address, network error, timeout). */
  readonly status: number | null
  readonly durationMs: number
  readonly error: string | null
}

export interface WebhookDelivery {
  readonly deliveryId: string
  readonly endpointId: string
  readonly eventId: string
  readonly eventType: string
  readonly state: 'pending' | 'delivered' | 'failed'
  readonly createdAt: Date
  readonly nextAttemptAt: Date | null
  readonly attempts: readonly DeliveryAttempt[]
}

/** A refused input: the message is the API's 400 and the dashboard's form error. */
export class WebhookInputError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message)
  }
}

interface EndpointRow {
  endpoint_id: string
  url: string
  description: string
  events: string
  state: EndpointState
  state_reason: string | null
  created_at: number
  previous_secret_until: number | null
}

function endpointOf(row: EndpointRow, nowMs: number): WebhookEndpoint {
  return {
    endpointId: row.endpoint_id,
    url: row.url,
    description: row.description,
    events: row.events === '*' ? ['*'] : row.events.split(' '),
    state: row.state,
    stateReason: row.state_reason,
    createdAt: new Date(row.created_at),
    previousSecretUntil:
      row.previous_secret_until !== null && row.previous_secret_until > nowMs
        ? new Date(row.previous_secret_until)
        : null,
  }
}

const ENDPOINT_ID = /^ep_[A-Za-z0-9_-]{16}$/
export const isEndpointId = (value: unknown): value is string => typeof value === 'string' && ENDPOINT_ID.test(value)
const newEndpointId = (): string => `ep_${randomBytes(12).toString('base64url')}`

/** The events field: `['*']`, or known event types; repeats count once, order is the catalogue's. */
export function parseEvents(value: unknown): string {
  if (value === undefined) return '*'
  if (!Array.isArray(value) || value.length === 0 || !value.every((item) => typeof item === 'string'))
    throw new WebhookInputError('events', 'events must be a non-empty array of event types, or ["*"] for all.')
  if (value.includes('*')) {
    if (value.length > 1) throw new WebhookInputError('events', 'events must be ["*"] alone, or event types.')
    return '*'
  }
  const unknown = value.find((item) => !isWebhookEventType(item))
  if (unknown !== undefined)
    throw new WebhookInputError(
      'events',
      `Unknown event type ${JSON.stringify(String(unknown).slice(0, 64))}; known: ${WEBHOOK_EVENT_TYPES.join(', ')}.`,
    )
  return WEBHOOK_EVENT_TYPES.filter((type: WebhookEventType) => value.includes(type)).join(' ')
}

export interface EndpointInput {
  readonly url: unknown
  readonly events?: unknown
  readonly description?: unknown
}

export function createEndpointStore(sql: WebhookSql, policy: AddressPolicy, now: () => number = Date.now) {
  const t = {
    endpoints: sql.table('saiku_webhook_endpoints'),
    outbox: sql.table('saiku_outbox'),
    deliveries: sql.table('saiku_webhook_deliveries'),
    attempts: sql.table('saiku_webhook_attempts'),
  }
  const SELECT = `SELECT endpoint_id, url, description, events, state, state_reason, created_at, previous_secret_until FROM ${t.endpoints}`

  async function find(tenantId: string, endpointId: string): Promise<WebhookEndpoint | null> {
    if (!isEndpointId(endpointId)) return null
    const [row] = await sql.all<EndpointRow>(`${SELECT} WHERE endpoint_id = $1 AND tenant_id = $2`, [
      endpointId,
      tenantId,
    ])
    return row === undefined ? null : endpointOf(row, now())
  }

  return {
    find,

    async list(tenantId: string): Promise<WebhookEndpoint[]> {
      const rows = await sql.all<EndpointRow>(`${SELECT} WHERE tenant_id = $1 ORDER BY created_at, endpoint_id`, [
        tenantId,
      ])
      return rows.map((row) => endpointOf(row, now()))
    },

    /** Adds an endpoint; resolves with it and its signing secret, which is shown this once. */
    async add(tenantId: string, input: EndpointInput): Promise<{ endpoint: WebhookEndpoint; secret: string }> {
      const urlProblem = webhookUrlProblem(input.url, policy)
      if (urlProblem !== null) throw new WebhookInputError('url', `${urlProblem}.`)
      const events = parseEvents(input.events)
      const description = input.description ?? ''
      if (description !== '') {
        const problem = labelProblem(description)
        if (problem !== null) throw new WebhookInputError('description', `${problem.replace('label', 'description')}.`)
      }
      const endpointId = newEndpointId()
      const secret = newSigningSecret()
      const nowMs = now()
      // The count and the insert in one transaction: two adds at once cannot pass the limit together.
      const [, inserted] = await sql.batch([
        { text: `SELECT 1`, values: [] },
        {
          // Events from now on: those still in the outbox (queued before this endpoint existed) are not its own.
          text: `INSERT INTO ${t.endpoints} (endpoint_id, tenant_id, url, description, events, secret, state, created_at, outbox_from)
                 SELECT $1, $2, $3, $4, $5, $6, 'active', $7, (SELECT COALESCE(MAX(id), 0) FROM ${t.outbox})
                 WHERE (SELECT COUNT(*) FROM ${t.endpoints} WHERE tenant_id = $2) < $8`,
          values: [endpointId, tenantId, input.url, description, events, secret, nowMs, MAX_ENDPOINTS_PER_TENANT],
        },
      ])
      if (inserted === 0)
        throw new WebhookInputError(
          'url',
          `A tenant has at most ${MAX_ENDPOINTS_PER_TENANT} webhook endpoints; remove one first.`,
        )
      return { endpoint: (await find(tenantId, endpointId))!, secret }
    },

    /** Removes an endpoint and its delivery log; false when the tenant has no such endpoint. */
    async remove(tenantId: string, endpointId: string): Promise<boolean> {
      if (!isEndpointId(endpointId)) return false
      const [, , removed] = await sql.batch([
        {
          text: `DELETE FROM ${t.attempts} WHERE delivery_id IN (SELECT delivery_id FROM ${t.deliveries} WHERE endpoint_id = $1 AND tenant_id = $2)`,
          values: [endpointId, tenantId],
        },
        {
          text: `DELETE FROM ${t.deliveries} WHERE endpoint_id = $1 AND tenant_id = $2`,
          values: [endpointId, tenantId],
        },
        {
          text: `DELETE FROM ${t.endpoints} WHERE endpoint_id = $1 AND tenant_id = $2`,
          values: [endpointId, tenantId],
        },
      ])
      return removed === 1
    },

    /**
     * A new signing secret, shown this once; the one it replaces keeps signing beside it for `SECRET_OVERLAP_MS`,
     * so receivers switch over without a refused delivery. Null when the tenant has no such endpoint.
     */
    async rotateSecret(
      tenantId: string,
      endpointId: string,
    ): Promise<{ endpoint: WebhookEndpoint; secret: string } | null> {
      if (!isEndpointId(endpointId)) return null
      const secret = newSigningSecret()
      const changed = await sql.run(
        `UPDATE ${t.endpoints} SET previous_secret = secret, previous_secret_until = $1, secret = $2
         WHERE endpoint_id = $3 AND tenant_id = $4`,
        [now() + SECRET_OVERLAP_MS, secret, endpointId, tenantId],
      )
      if (changed === 0) return null
      return { endpoint: (await find(tenantId, endpointId))!, secret }
    },

    /** Turns a failing or disabled endpoint back on; null when the tenant has no such endpoint. */
    async enable(tenantId: string, endpointId: string): Promise<WebhookEndpoint | null> {
      if (!isEndpointId(endpointId)) return null
      await sql.run(
        `UPDATE ${t.endpoints} SET state = 'active', state_reason = NULL WHERE endpoint_id = $1 AND tenant_id = $2`,
        [endpointId, tenantId],
      )
      return find(tenantId, endpointId)
    },

    /** The endpoint's latest deliveries, newest first, each with its attempts (time, status, duration). */
    async deliveries(tenantId: string, endpointId: string, limit = 50): Promise<WebhookDelivery[]> {
      if (!isEndpointId(endpointId)) return []
      const rows = await sql.all<{
        delivery_id: string
        endpoint_id: string
        event_id: string
        event_type: string
        state: 'pending' | 'delivered' | 'failed'
        created_at: number
        next_attempt_at: number | null
      }>(
        `SELECT delivery_id, endpoint_id, event_id, event_type, state, created_at, next_attempt_at FROM ${t.deliveries}
         WHERE endpoint_id = $1 AND tenant_id = $2 ORDER BY created_at DESC, delivery_id LIMIT $3`,
        [endpointId, tenantId, limit],
      )
      if (rows.length === 0) return []
      const placeholders = rows.map((_, index) => `$${index + 1}`).join(', ')
      const attempts = await sql.all<{
        delivery_id: string
        attempt: number
        attempted_at: number
        status: number | null
        duration_ms: number
        error: string | null
      }>(
        `SELECT delivery_id, attempt, attempted_at, status, duration_ms, error FROM ${t.attempts}
         WHERE delivery_id IN (${placeholders}) ORDER BY attempt`,
        rows.map((row) => row.delivery_id),
      )
      return rows.map((row) => ({
        deliveryId: row.delivery_id,
        endpointId: row.endpoint_id,
        eventId: row.event_id,
        eventType: row.event_type,
        state: row.state,
        createdAt: new Date(row.created_at),
        nextAttemptAt: row.state === 'pending' && row.next_attempt_at !== null ? new Date(row.next_attempt_at) : null,
        attempts: attempts
          .filter((attempt) => attempt.delivery_id === row.delivery_id)
          .map((attempt) => ({
            attempt: attempt.attempt,
            attemptedAt: new Date(attempt.attempted_at),
            status: attempt.status,
            durationMs: attempt.duration_ms,
            error: attempt.error,
          })),
      }))
    },

    /**
     * Sends the delivery again, now, with the same event ID (receivers deduplicate on it); its retries start
     * over. False when the tenant has no such delivery.
     */
    async redeliver(tenantId: string, deliveryId: string): Promise<boolean> {
      if (typeof deliveryId !== 'string' || deliveryId.length > 200) return false
      const nowMs = now()
      const changed = await sql.run(
        // Its retries start over from here; the attempts before stay in the log, numbered on.
        `UPDATE ${t.deliveries} SET state = 'pending', next_attempt_at = $1, lease_until = NULL, retry_base = attempts
         WHERE delivery_id = $2 AND tenant_id = $3 AND (state <> 'pending' OR lease_until IS NULL OR lease_until <= $1)`,
        [nowMs, deliveryId, tenantId],
      )
      return changed === 1
    },

    /** Queues a `webhook.test` delivery to the endpoint, due now; null when the tenant has no such endpoint. */
    async sendTestEvent(tenantId: string, endpointId: string): Promise<string | null> {
      if ((await find(tenantId, endpointId)) === null) return null
      const eventId = newEventId()
      const nowMs = now()
      await sql.run(
        `INSERT INTO ${t.deliveries} (delivery_id, endpoint_id, tenant_id, event_id, event_type, data, occurred_at,
           created_at, state, attempts, next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 'pending', 0, $7)`,
        [
          `${endpointId}_${eventId}`,
          endpointId,
          tenantId,
          eventId,
          TEST_EVENT_TYPE,
          JSON.stringify({ endpointId }),
          nowMs,
        ],
      )
      return `${endpointId}_${eventId}`
    },
  }
}

export type EndpointStore = ReturnType<typeof createEndpointStore>
