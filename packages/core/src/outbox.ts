import { randomBytes } from 'node:crypto'
import type { ApiKeyRecord } from './store.js'

/**
 * An event a store writes to its outbox in the same transaction as the change that caused it, so a crash
 * between the change and its delivery loses nothing. `data` never holds a secret: key IDs, labels, counts, times.
 */
export interface OutboxEvent {
  /** Unique and stable across redeliveries: receivers deduplicate on it (`webhook-id`). */
  readonly id: string
  /** `key.created`, `key.revoked`, … */
  readonly type: string
  readonly tenantId: string
  readonly occurredAt: Date
  readonly data: Readonly<Record<string, unknown>>
}

/** What a key write is, beyond its record: a key created by a rotation names the key it replaces. */
export interface KeyWriteContext {
  readonly rotatedFrom?: string
}

/** A new event ID: `msg_` and 128 random bits, base64url. */
export function newEventId(): string {
  return `msg_${randomBytes(16).toString('base64url')}`
}

/** A key event's data: its ID, label, environment, expiry; never its digest or permissions' secrets. */
export function keyEventData(record: Pick<ApiKeyRecord, 'keyId' | 'label' | 'environment' | 'expiresAt'>): {
  keyId: string
  label: string
  environment: string
  expiresAt: string | null
} {
  return {
    keyId: record.keyId,
    label: record.label,
    environment: record.environment,
    expiresAt: record.expiresAt === null ? null : record.expiresAt.toISOString(),
  }
}

/** The event a key's creation writes: `key.rotated` (naming the key replaced) when a rotation made it. */
export function keyCreatedEvent(
  record: ApiKeyRecord,
  context: KeyWriteContext | undefined,
  id: string = newEventId(),
): OutboxEvent {
  const rotatedFrom = context?.rotatedFrom
  return {
    id,
    type: rotatedFrom === undefined ? 'key.created' : 'key.rotated',
    tenantId: record.tenantId,
    occurredAt: record.createdAt,
    data: { ...keyEventData(record), ...(rotatedFrom === undefined ? {} : { previousKeyId: rotatedFrom }) },
  }
}

const EVENT_TYPE = /^[a-z][a-z_]*(?:\.[a-z][a-z_]*)+$/

/** Checks an event before a store writes it; an error message, or null when it is fine. */
export function outboxEventProblem(event: OutboxEvent): string | null {
  if (typeof event !== 'object' || event === null) return 'an event must be an object'
  if (typeof event.id !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(event.id))
    return 'event id must be 1 to 64 letters, digits, _ or -'
  if (typeof event.type !== 'string' || event.type.length > 64 || !EVENT_TYPE.test(event.type))
    return 'event type must look like "key.created"'
  if (typeof event.tenantId !== 'string' || event.tenantId.length === 0) return 'event tenantId must be a string'
  if (!(event.occurredAt instanceof Date) || Number.isNaN(event.occurredAt.getTime()))
    return 'event occurredAt must be a valid Date'
  if (typeof event.data !== 'object' || event.data === null || Array.isArray(event.data))
    return 'event data must be an object'
  return null
}
