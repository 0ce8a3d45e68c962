import type { AddressPolicy } from './address-guard.js'
import { sendDelivery, NODE_TRANSPORT, type SendResult, type Transport } from './send.js'
import { signedHeaders } from './signing.js'
import type { WebhookSql } from './sql.js'

/**
 * The pause after each failed attempt, before jitter: about 24 hours in all. After the last one fails the
 * delivery is given up and its endpoint marked failing. Svix and Stripe space theirs alike.
 */
export const DEFAULT_RETRY_DELAYS_MS: readonly number[] = Object.freeze([
  5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000, 7_200_000, 14_400_000, 28_800_000, 28_800_000,
])
export const DEFAULT_TIMEOUT_MS = 10_000
export const DEFAULT_MAX_RESPONSE_BYTES = 65_536

export interface WebhookDeliveryOptions {
  readonly sql: WebhookSql
  readonly policy: AddressPolicy
  /** Resolving and connecting; tests inject theirs. Default: the system resolver and sockets. */
  readonly transport?: Transport
  /** The clock of leases, retries and log times. Default `Date.now`. */
  readonly now?: () => number
  /** Jitter's source, in [0, 1). Default `Math.random`. */
  readonly random?: () => number
  /** One attempt, from resolving to the answer's last byte read. Default 10000. */
  readonly timeoutMs?: number
  /** Starts an attempt's deadline; returns what cancels it. Default: a timer. */
  readonly schedule?: (callback: () => void, ms: number) => () => void
  /** Answer bytes read at most. Default 65536. */
  readonly maxResponseBytes?: number
  /** Pauses between attempts (jittered by ±25 %); their count is the retries. Default: about 24 hours' worth. */
  readonly retryDelaysMs?: readonly number[]
  /** How long a claimed attempt is this process's: after it, another may take the delivery. Default timeout + 60 s. */
  readonly leaseMs?: number
  /** Deliveries claimed per round. Default 16. */
  readonly batchSize?: number
  /** How often to look for work. Default 1000. */
  readonly pollIntervalMs?: number
  /** A round that failed (a store outage): nothing is lost, the next round tries again. */
  readonly onError?: (error: Error) => void
}

/** A delivery claimed for one attempt. */
interface Claimed {
  readonly delivery_id: string
  readonly endpoint_id: string
  readonly event_id: string
  readonly event_type: string
  readonly data: string
  readonly occurred_at: number
  readonly attempts: number
  /** The attempts made before a redelivery: retries count from there. */
  readonly retry_base: number
  readonly lease_until: number
}

interface EndpointRow {
  readonly endpoint_id: string
  readonly url: string
  readonly secret: string
  readonly previous_secret: string | null
  readonly previous_secret_until: number | null
  readonly state: 'active' | 'failing' | 'disabled'
}

export interface RoundResult {
  /** Outbox events turned into deliveries. */
  readonly fannedOut: number
  /** Attempts made. */
  readonly attempted: number
}

export interface WebhookDelivery {
  /** One round: the outbox's events to deliveries, then every due attempt claimed, sent and recorded. */
  runOnce(): Promise<RoundResult>
  /** Rounds every `pollIntervalMs` until `stop`; a round never overlaps the one before. */
  start(): void
  /** Stops the rounds and waits for the one under way. */
  stop(): Promise<void>
}

/** The body a delivery sends: the same bytes on every attempt of it. */
export function deliveryBody(type: string, occurredAtMs: number, data: string): string {
  return `{"type":${JSON.stringify(type)},"timestamp":${JSON.stringify(new Date(occurredAtMs).toISOString())},"data":${data}}`
}

const positiveInteger = (value: number | undefined, fallback: number, name: string): number => {
  const chosen = value ?? fallback
  if (!Number.isSafeInteger(chosen) || chosen < 1)
    throw new Error(`${name}: expected a positive integer, got ${String(value)}`)
  return chosen
}

export function createWebhookDelivery(options: WebhookDeliveryOptions): WebhookDelivery {
  const { sql, policy } = options
  const transport = options.transport ?? NODE_TRANSPORT
  const now = options.now ?? Date.now
  const random = options.random ?? Math.random
  const timeoutMs = positiveInteger(options.timeoutMs, DEFAULT_TIMEOUT_MS, 'timeoutMs')
  const maxResponseBytes = positiveInteger(options.maxResponseBytes, DEFAULT_MAX_RESPONSE_BYTES, 'maxResponseBytes')
  const retryDelaysMs = options.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS
  if (!retryDelaysMs.every((ms) => Number.isSafeInteger(ms) && ms >= 0))
    throw new Error('retryDelaysMs: expected non-negative integers')
  const leaseMs = positiveInteger(options.leaseMs, timeoutMs + 60_000, 'leaseMs')
  if (leaseMs <= timeoutMs) throw new Error(`leaseMs: expected more than timeoutMs (${timeoutMs}), got ${leaseMs}`)
  const batchSize = positiveInteger(options.batchSize, 16, 'batchSize')
  const pollIntervalMs = positiveInteger(options.pollIntervalMs, 1_000, 'pollIntervalMs')
  const onError = options.onError ?? (() => {})
  const t = {
    outbox: sql.table('saiku_outbox'),
    endpoints: sql.table('saiku_webhook_endpoints'),
    deliveries: sql.table('saiku_webhook_deliveries'),
    attempts: sql.table('saiku_webhook_attempts'),
  }

  /** The oldest outbox events become one delivery per endpoint that asked for them, and leave the outbox. */
  async function fanOut(): Promise<number> {
    const rows = await sql.all<{ id: number | string }>(`SELECT id FROM ${t.outbox} ORDER BY id LIMIT 200`, [])
    if (rows.length === 0) return 0
    const lastId = Number(rows.at(-1)!.id)
    const data = sql.dialect === 'postgres' ? 'o.data::text' : 'o.data'
    // Two processes may fan out the same rows: a delivery is one per (endpoint, event), the second insert adds none.
    await sql.batch([
      {
        text: `INSERT INTO ${t.deliveries} (delivery_id, endpoint_id, tenant_id, event_id, event_type, data, occurred_at,
                 created_at, state, attempts, next_attempt_at)
               SELECT e.endpoint_id || '_' || o.event_id, e.endpoint_id, o.tenant_id, o.event_id, o.type, ${data},
                 o.occurred_at, $2, 'pending', 0, $2
               FROM ${t.outbox} o JOIN ${t.endpoints} e ON e.tenant_id = o.tenant_id AND e.state <> 'disabled'
                 AND (e.events = '*' OR (' ' || e.events || ' ') LIKE ('% ' || o.type || ' %'))
               WHERE o.id <= $1 AND o.id > e.outbox_from
               ON CONFLICT DO NOTHING`,
        values: [lastId, now()],
      },
      { text: `DELETE FROM ${t.outbox} WHERE id <= $1`, values: [lastId] },
    ])
    return rows.length
  }

  /**
   * Due deliveries, each leased to this process for one attempt. On PostgreSQL, rows another process is claiming
   * are skipped (FOR UPDATE SKIP LOCKED); SQLite runs one writer at a time. A lease that ran out (a process that
   * died mid-attempt) makes the delivery due again: at least once.
   */
  async function claim(): Promise<Claimed[]> {
    const nowMs = now()
    const lock = sql.dialect === 'postgres' ? 'FOR UPDATE SKIP LOCKED' : ''
    return sql.all<Claimed>(
      `UPDATE ${t.deliveries} SET lease_until = $2, attempts = attempts + 1,
         first_attempt_at = COALESCE(first_attempt_at, $1)
       WHERE delivery_id IN (
         SELECT delivery_id FROM ${t.deliveries}
         WHERE state = 'pending' AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
         ORDER BY next_attempt_at LIMIT $3 ${lock})
       RETURNING delivery_id, endpoint_id, event_id, event_type, data, occurred_at, attempts, retry_base, lease_until`,
      [nowMs, nowMs + leaseMs, batchSize],
    )
  }

  async function endpointsOf(claimed: readonly Claimed[]): Promise<Map<string, EndpointRow>> {
    const ids = [...new Set(claimed.map((row) => row.endpoint_id))]
    const placeholders = ids.map((_, index) => `$${index + 1}`).join(', ')
    const rows = await sql.all<EndpointRow>(
      `SELECT endpoint_id, url, secret, previous_secret, previous_secret_until, state FROM ${t.endpoints}
       WHERE endpoint_id IN (${placeholders})`,
      ids,
    )
    return new Map(rows.map((row) => [row.endpoint_id, row]))
  }

  async function attempt(delivery: Claimed, endpoint: EndpointRow | undefined): Promise<void> {
    const startedMs = now()
    let result: SendResult
    if (endpoint === undefined || endpoint.state === 'disabled') {
      result = { status: null, error: 'endpoint disabled' }
    } else {
      const secrets = [endpoint.secret]
      // A rotated-out secret signs too until its end: receivers switch over without a missed delivery.
      if (endpoint.previous_secret !== null && (endpoint.previous_secret_until ?? 0) > startedMs)
        secrets.push(endpoint.previous_secret)
      const body = deliveryBody(delivery.event_type, delivery.occurred_at, delivery.data)
      const headers = signedHeaders(secrets, delivery.event_id, Math.floor(startedMs / 1000), body)
      result = await sendDelivery(endpoint.url, headers, body, {
        policy,
        transport,
        timeoutMs,
        maxResponseBytes,
        ...(options.schedule === undefined ? {} : { schedule: options.schedule }),
      })
    }
    await record(delivery, endpoint, result, startedMs)
  }

  /** The attempt in the log, and what follows from it: delivered, retried later, given up, endpoint disabled. */
  async function record(
    delivery: Claimed,
    endpoint: EndpointRow | undefined,
    result: SendResult,
    startedMs: number,
  ): Promise<void> {
    const finishedMs = now()
    const delivered = result.status !== null && result.status >= 200 && result.status < 300
    const gone = result.status === 410
    const disabled = endpoint === undefined || endpoint.state === 'disabled'
    const made = delivery.attempts - delivery.retry_base
    const retriesLeft = made <= retryDelaysMs.length
    const state = delivered ? 'delivered' : gone || disabled || !retriesLeft ? 'failed' : 'pending'
    const nextMs =
      state === 'pending' ? finishedMs + Math.round(retryDelaysMs[made - 1]! * (0.75 + random() * 0.5)) : null
    const steps = [
      {
        text: `INSERT INTO ${t.attempts} (delivery_id, attempt, attempted_at, status, duration_ms, error)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
        values: [
          delivery.delivery_id,
          delivery.attempts,
          startedMs,
          result.status,
          Math.max(0, finishedMs - startedMs),
          result.error,
        ],
      },
      // Only while the lease is still this process's: one that ran out belongs to whoever claimed it since.
      {
        text: `UPDATE ${t.deliveries} SET state = $1, next_attempt_at = $2, lease_until = NULL, last_status = $3
               WHERE delivery_id = $4 AND lease_until = $5`,
        values: [state, nextMs, result.status, delivery.delivery_id, delivery.lease_until],
      },
    ]
    if (delivered)
      steps.push({
        text: `UPDATE ${t.endpoints} SET state = 'active', state_reason = NULL WHERE endpoint_id = $1 AND state = 'failing'`,
        values: [delivery.endpoint_id],
      })
    else if (gone)
      steps.push({
        text: `UPDATE ${t.endpoints} SET state = 'disabled', state_reason = $2 WHERE endpoint_id = $1`,
        values: [delivery.endpoint_id, 'The endpoint answered 410 Gone.'],
      })
    else if (state === 'failed' && !disabled)
      steps.push({
        text: `UPDATE ${t.endpoints} SET state = 'failing', state_reason = $2 WHERE endpoint_id = $1 AND state = 'active'`,
        values: [
          delivery.endpoint_id,
          `Event ${delivery.event_id} was not accepted after ${made} attempts (last: ${result.error ?? 'no answer'}).`,
        ],
      })
    await sql.batch(steps)
  }

  async function runOnce(): Promise<RoundResult> {
    const fannedOut = await fanOut()
    const claimed = await claim()
    if (claimed.length === 0) return { fannedOut, attempted: 0 }
    const endpoints = await endpointsOf(claimed)
    // A failed record (a store outage) leaves the lease to run out: the attempt is made again, never lost.
    const results = await Promise.allSettled(claimed.map((row) => attempt(row, endpoints.get(row.endpoint_id))))
    for (const result of results)
      if (result.status === 'rejected')
        onError(result.reason instanceof Error ? result.reason : new Error(String(result.reason)))
    return { fannedOut, attempted: claimed.length }
  }

  let timer: NodeJS.Timeout | undefined
  let running: Promise<unknown> = Promise.resolve()
  let stopped = true
  const tick = (): void => {
    running = runOnce()
      .catch((error: unknown) => onError(error instanceof Error ? error : new Error(String(error))))
      .finally(() => {
        if (stopped) return
        timer = setTimeout(tick, pollIntervalMs)
        timer.unref()
      })
  }
  return {
    runOnce,
    start() {
      if (!stopped) return
      stopped = false
      timer = setTimeout(tick, 0)
      timer.unref()
    },
    async stop() {
      stopped = true
      if (timer !== undefined) clearTimeout(timer)
      await running
    },
  }
}
