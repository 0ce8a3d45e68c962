import { emitOnce } from './events.js'
import type { WebhookSql } from './sql.js'

// Time-based events: `key.expiring` (7 days and 1 day before), `key.expired`, `trial.ending` (3 days before),
// `trial.ended`. Every process sweeps now and then; each event has a fire key recorded with it in one transaction
// (saiku_webhook_fired), so it is emitted once across processes and restarts. A sweep missed (every process down)
// is caught up by the next one, for events up to a week late.

const DAY_MS = 86_400_000
/** How late an event may still be sent after a time all processes were down. */
const CATCH_UP_MS = 7 * DAY_MS
export const DEFAULT_SWEEP_INTERVAL_MS = 60_000

/** A column of the key store's tables as milliseconds (SQLite keeps them so; PostgreSQL as timestamptz). */
const ms = (sql: WebhookSql, column: string): string =>
  sql.dialect === 'postgres' ? `(EXTRACT(EPOCH FROM ${column}) * 1000)::bigint` : column

/** Resolves with how many events this sweep emitted (those another process emitted first are not counted). */
export async function sweepTimeEvents(sql: WebhookSql, nowMs: number): Promise<number> {
  let emitted = 0
  const keys = await sql.all<{
    key_id: string
    tenant_id: string
    label: string
    environment: string
    expires_ms: number
  }>(
    `SELECT key_id, tenant_id, label, environment, ${ms(sql, 'expires_at')} AS expires_ms FROM ${sql.table('saiku_api_keys')}
     WHERE revoked_at IS NULL AND expires_at IS NOT NULL
       AND ${ms(sql, 'expires_at')} > $1 AND ${ms(sql, 'expires_at')} <= $2`,
    [nowMs - CATCH_UP_MS, nowMs + 7 * DAY_MS],
  )
  for (const key of keys) {
    const expiresMs = Number(key.expires_ms)
    const data = {
      keyId: key.key_id,
      label: key.label,
      environment: key.environment,
      expiresAt: new Date(expiresMs).toISOString(),
    }
    // One stage at a time: the latest one reached. The expiry is in the fire key: a key given a new expiry is told again.
    const stage =
      nowMs >= expiresMs
        ? { type: 'key.expired' as const, days: null }
        : nowMs >= expiresMs - DAY_MS
          ? { type: 'key.expiring' as const, days: 1 }
          : { type: 'key.expiring' as const, days: 7 }
    const fireKey = `${stage.type}:${stage.days ?? 0}:${key.key_id}:${expiresMs}`
    const input = {
      type: stage.type,
      tenantId: key.tenant_id,
      data: stage.days === null ? data : { ...data, expiresInDays: stage.days },
    }
    if (await emitOnce(sql, fireKey, input, nowMs)) emitted++
  }
  const trials = await sql.all<{ tenant_id: string; trial_ms: number }>(
    `SELECT tenant_id, ${ms(sql, 'trial_ends_at')} AS trial_ms FROM ${sql.table('saiku_tenants')}
     WHERE subscription_status = 'trialing' AND trial_ends_at IS NOT NULL
       AND ${ms(sql, 'trial_ends_at')} > $1 AND ${ms(sql, 'trial_ends_at')} <= $2`,
    [nowMs - CATCH_UP_MS, nowMs + 3 * DAY_MS],
  )
  for (const trial of trials) {
    const endsMs = Number(trial.trial_ms)
    const type = nowMs >= endsMs ? ('trial.ended' as const) : ('trial.ending' as const)
    const input = { type, tenantId: trial.tenant_id, data: { trialEndsAt: new Date(endsMs).toISOString() } }
    if (await emitOnce(sql, `${type}:${trial.tenant_id}:${endsMs}`, input, nowMs)) emitted++
  }
  return emitted
}

/** Sweeps every `intervalMs` (and once at start); a failed sweep is reported and the next one catches up. */
export function startScheduler(
  sql: WebhookSql,
  options: { now?: () => number; intervalMs?: number; onError?: (error: Error) => void } = {},
): { stop(): Promise<void> } {
  const now = options.now ?? Date.now
  let running: Promise<unknown> = Promise.resolve()
  const sweep = () => {
    running = sweepTimeEvents(sql, now()).catch((error: unknown) =>
      options.onError?.(error instanceof Error ? error : new Error(String(error))),
    )
  }
  sweep()
  const timer = setInterval(sweep, options.intervalMs ?? DEFAULT_SWEEP_INTERVAL_MS)
  timer.unref()
  return {
    async stop() {
      clearInterval(timer)
      await running
    },
  }
}
