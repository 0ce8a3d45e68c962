import { newEventId, type OutboxEvent } from '@saiku/core/store'
import type { TenantAdminStore } from '@saiku/core'
import type { LeakedKeyEvent, SecretScanningOptions } from '../secret-scanning.js'
import type { WebhookSql } from './sql.js'

/** Every event a webhook endpoint can ask for, with what it means: the API, the CLI and the dashboard list these. */
export const WEBHOOK_EVENTS = Object.freeze({
  'key.created': 'An API key was created.',
  'key.revoked': 'An API key was revoked.',
  'key.rotated': 'An API key was rotated: data.keyId is the new key, data.previousKeyId the one it replaces.',
  'key.updated': "An API key's label, allowed addresses or expiry changed.",
  'key.expiring': 'An API key expires in 7 days, then again 1 day before (data.expiresInDays).',
  'key.expired': 'An API key reached its expiry.',
  'key.leaked': 'An API key was found in public (secret scanning) and revoked or reported.',
  'quota.threshold': 'A day or month quota reached 80 % or 100 %, once per window (data.window, data.percent).',
  'rate_limit.exceeded': 'Requests were refused for the rate limit: at most once per tenant per window.',
  'trial.ending': 'The trial ends in 3 days.',
  'trial.ended': 'The trial ended.',
} as const)

export type WebhookEventType = keyof typeof WEBHOOK_EVENTS
export const WEBHOOK_EVENT_TYPES: readonly WebhookEventType[] = Object.freeze(
  Object.keys(WEBHOOK_EVENTS) as WebhookEventType[],
)
/** The event `Send test event` delivers; never written to the outbox, and every endpoint takes it. */
export const TEST_EVENT_TYPE = 'webhook.test'

export const isWebhookEventType = (value: unknown): value is WebhookEventType =>
  typeof value === 'string' && Object.hasOwn(WEBHOOK_EVENTS, value)

/** An event to emit: the ID and time default to a new ID and now. `data` never holds a secret. */
export interface EventInput {
  readonly type: WebhookEventType
  readonly tenantId: string
  readonly data: Readonly<Record<string, unknown>>
  readonly id?: string
  readonly occurredAt?: Date
}

const toOutboxEvent = (input: EventInput): OutboxEvent => ({
  id: input.id ?? newEventId(),
  type: input.type,
  tenantId: input.tenantId,
  occurredAt: input.occurredAt ?? new Date(),
  data: input.data,
})

/** A store that keeps an outbox: `@saiku/sqlite`'s and `@saiku/postgres`'s. */
interface OutboxStore {
  appendEvents(events: readonly OutboxEvent[]): Promise<void>
  revokeKey(keyId: string, revokedAt: Date, events?: readonly OutboxEvent[]): Promise<boolean>
}

function outboxStore(store: TenantAdminStore): OutboxStore {
  const candidate = store as Partial<OutboxStore>
  if (typeof candidate.appendEvents !== 'function')
    throw new Error('Webhook events need the SQLite or PostgreSQL key store (a store with an outbox).')
  return store as unknown as OutboxStore
}

/**
 * Emits a webhook event for the tenant's endpoints that asked for its type, outside any other write: the row is
 * in the outbox when this resolves, and is delivered from there (at least once, through restarts). Use
 * `revokeKeyWithEvent` when the event belongs to a revocation, so that both are written in one transaction.
 *
 * ```ts
 * await emitEvent(store, { type: 'key.leaked', tenantId, data: { keyId, tokenHash, url, action: 'reported' } })
 * ```
 */
export async function emitEvent(store: TenantAdminStore, input: EventInput): Promise<string> {
  const event = toOutboxEvent(input)
  await outboxStore(store).appendEvents([event])
  return event.id
}

/**
 * Revokes a key and emits `input` (such as `key.leaked`) in the revocation's transaction: the event is written
 * only when this call revoked the key (false when it was revoked already or does not exist), and then always.
 * The store's own `key.revoked` is written too when its `outbox` option is on, as the server sets it.
 */
export async function revokeKeyWithEvent(
  store: TenantAdminStore,
  keyId: string,
  revokedAt: Date,
  input: EventInput,
): Promise<boolean> {
  return outboxStore(store).revokeKey(keyId, revokedAt, [toOutboxEvent(input)])
}

/** The `key.leaked` event of a leak: the key's ID and label, a fingerprint of the token, never the token. */
export const keyLeakedEvent = (leak: LeakedKeyEvent): EventInput => ({
  type: 'key.leaked',
  tenantId: leak.tenantId,
  occurredAt: leak.at,
  data: {
    keyId: leak.keyId,
    label: leak.label,
    tokenFingerprint: leak.tokenFingerprint,
    url: leak.url,
    source: leak.source,
    action: leak.revoked ? 'revoked' : 'reported',
  },
})

/**
 * The secret scanning route's hooks that write `key.leaked` to the outbox: with the revocation, in its transaction
 * (a crash between the two loses neither), or on its own when the leak is only reported.
 */
export function secretScanningEvents(
  store: TenantAdminStore,
): Required<Pick<SecretScanningOptions, 'onLeaked' | 'revokeLeaked'>> {
  outboxStore(store)
  return {
    onLeaked: async (leak) => {
      await emitEvent(store, keyLeakedEvent(leak))
    },
    revokeLeaked: (record, leak) => revokeKeyWithEvent(store, record.keyId, leak.at, keyLeakedEvent(leak)),
  }
}

/**
 * Emits an event once for `fireKey`, across processes and restarts: the key is recorded with the event in one
 * transaction, and a key recorded already emits nothing. Resolves with whether this call emitted it.
 */
export async function emitOnce(sql: WebhookSql, fireKey: string, input: EventInput, nowMs: number): Promise<boolean> {
  const event = toOutboxEvent(input)
  const data = sql.dialect === 'postgres' ? 'CAST($4 AS jsonb)' : '$4'
  const [fired] = await sql.batch([
    {
      text: `INSERT INTO ${sql.table('saiku_webhook_fired')} (fire_key, fired_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
      values: [fireKey, nowMs],
    },
    {
      text: `INSERT INTO ${sql.table('saiku_outbox')} (event_id, tenant_id, type, data, occurred_at) VALUES ($1, $2, $3, ${data}, $5)`,
      values: [event.id, event.tenantId, event.type, JSON.stringify(event.data), event.occurredAt.getTime()],
      ifChanged: true,
    },
  ])
  return fired === 1
}
