import type { DecisionEvent, LimitDecision } from '@saiku/core'
import { emitOnce, type EventInput } from './events.js'
import type { WebhookSql } from './sql.js'

// Events a request causes (a quota crossing 80 %, a tenant refused for its rate limit) are queued here, in
// memory, and written to the outbox in the background: a request never waits on the database for a webhook.
// Each carries a fire key, so that it is emitted once per window across processes (saiku_webhook_fired).

/** At most this many events wait in memory; past it the newest are dropped and counted (a long outage). */
export const MAX_QUEUED_EVENTS = 10_000
/** Fire keys this process remembers having queued, so that every request of a window does not queue it again. */
const MAX_REMEMBERED_KEYS = 50_000

interface Queued {
  readonly fireKey: string
  readonly input: EventInput
}

export interface EventQueue {
  /** Queues the event unless this fire key was queued already; never waits, never throws. */
  queue(fireKey: string, input: EventInput): void
  /** Writes what is queued; what fails stays queued for the next flush. Resolves with how many were written. */
  flush(): Promise<number>
  /** Events dropped because the queue was full. */
  readonly dropped: number
  /** Flushes every `intervalMs` until `stop`. */
  start(intervalMs?: number): void
  stop(): Promise<void>
}

export function createEventQueue(sql: WebhookSql, now: () => number, onError: (error: Error) => void): EventQueue {
  let pending: Queued[] = []
  const remembered = new Set<string>()
  let dropped = 0
  let timer: NodeJS.Timeout | undefined
  let flushing: Promise<number> = Promise.resolve(0)

  async function flushNow(): Promise<number> {
    const batch = pending
    pending = []
    let written = 0
    for (let index = 0; index < batch.length; index++) {
      try {
        await emitOnce(sql, batch[index]!.fireKey, batch[index]!.input, now())
        written++
      } catch (error) {
        // The database is away: keep the rest, in order, for the next flush.
        pending = [...batch.slice(index), ...pending].slice(0, MAX_QUEUED_EVENTS)
        onError(error instanceof Error ? error : new Error(String(error)))
        break
      }
    }
    return written
  }

  return {
    queue(fireKey, input) {
      if (remembered.has(fireKey)) return
      if (pending.length >= MAX_QUEUED_EVENTS) {
        dropped++
        return
      }
      if (remembered.size >= MAX_REMEMBERED_KEYS) remembered.delete(remembered.values().next().value!)
      remembered.add(fireKey)
      pending.push({ fireKey, input })
    },
    flush() {
      flushing = flushing.then(flushNow, flushNow)
      return flushing
    },
    get dropped() {
      return dropped
    },
    start(intervalMs = 1_000) {
      if (timer !== undefined) return
      timer = setInterval(() => void this.flush(), intervalMs)
      timer.unref()
    },
    async stop() {
      if (timer !== undefined) clearInterval(timer)
      timer = undefined
      await this.flush()
    },
  }
}

/** The share of a day or month quota at which `quota.threshold` is sent. */
export const QUOTA_THRESHOLDS_PERCENT: readonly number[] = Object.freeze([80, 100])

/**
 * After an admitted request: `quota.threshold` for each day or month quota whose count reached 80 % or 100 %, once
 * per window (the window is named by when it resets, to the minute, the same in every process).
 */
export function queueQuotaThresholds(
  events: EventQueue,
  tenantId: string,
  decision: LimitDecision,
  nowMs: number,
): void {
  for (const window of ['day', 'month'] as const) {
    const state = decision[window]
    if (state === undefined || state.limit <= 0) continue
    const used = state.used ?? state.limit - state.remaining
    const resetsAtMs = Math.round((nowMs + state.resetMs) / 60_000) * 60_000
    for (const percent of QUOTA_THRESHOLDS_PERCENT) {
      if (used * 100 < state.limit * percent) continue
      events.queue(`quota.threshold:${tenantId}:${window}:${resetsAtMs}:${percent}`, {
        type: 'quota.threshold',
        tenantId,
        data: { window, percent, used, quota: state.limit, resetsAt: new Date(resetsAtMs).toISOString() },
      })
    }
  }
}

/**
 * `rate_limit.exceeded`, never per refused request: once per tenant per minute across processes, and in this
 * process not again until the tenant was admitted since (the refusals it sends are one episode).
 */
export function createRateLimitWatch(events: EventQueue, now: () => number) {
  const refusing = new Set<string>()
  return {
    onDecision(event: DecisionEvent): void {
      if (event.tenantId === null || !event.enforced) return
      if (event.status < 400) {
        refusing.delete(event.tenantId)
        return
      }
      if (event.reason !== 'rate_limited' || refusing.has(event.tenantId)) return
      if (refusing.size >= MAX_REMEMBERED_KEYS) refusing.delete(refusing.values().next().value!)
      refusing.add(event.tenantId)
      const minuteMs = Math.floor(now() / 60_000) * 60_000
      events.queue(`rate_limit.exceeded:${event.tenantId}:${minuteMs}`, {
        type: 'rate_limit.exceeded',
        tenantId: event.tenantId,
        data: { keyId: event.keyId, method: event.method, path: event.path, at: new Date(now()).toISOString() },
      })
    },
  }
}
