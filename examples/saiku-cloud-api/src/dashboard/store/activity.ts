import { toDate, type PostgresTables, type SqliteDatabase, type Time } from './database.js'

/** `system`: a change the server made by itself, e.g. a downgrade applied at the billing period's end. */
export type ActorType = 'member' | 'api_key' | 'cli' | 'system'

/** The `system` actor of the downgrades and cancellations that a billing period's end applies. */
export const PERIOD_END_ACTOR = 'billing period end'

/** How the Activity page and the CLI name a `system` actor. */
export const systemActorLabel = (actor: string): string =>
  actor === PERIOD_END_ACTOR ? 'Billing (period end)' : `System (${actor})`

export interface ActivityInput {
  readonly tenantId: string
  readonly actorType: ActorType
  /** A member's email, an API key ID, "cli", or what the system acted on (e.g. "billing period end"). */
  readonly actor: string
  /** key.created, key.revoked, key.updated, key.rotated (target: "old → new"), key.address_refused, trial.started, plan.changed (target: the tier, or "team → starter" when a period end applies a downgrade), plan.change_scheduled, plan.change_dropped, subscription.cancel_scheduled, subscription.cancel_undone, subscription.canceled (the period end applied a cancellation), sign_in (target: how, e.g. "with a recovery code"), sign_in.refused, sign_in.throttled, sign_in.code_refused, sign_in.code_throttled, reauth.refused, session.ended, two_factor.enabled, two_factor.disabled, two_factor.recovery_codes_replaced, two_factor.required, two_factor.not_required, two_factor.reset, member.added, member.removed, member.password_reset, member.password_changed, member.password_change_refused, key.leaked (actor: GitHub secret scanning; target: the key ID, where it was found, a fingerprint of the token and what was done), member.invited (target: "email (role)"), member.invitation_revoked, member.joined (actor: the new member), member.role_changed (target: "email: admin → viewer") */
  readonly action: string
  readonly target?: string | null
  readonly ip?: string | null
  readonly at?: Date
}

export interface ActivityEvent {
  readonly id: number
  readonly tenantId: string
  readonly at: Date
  readonly actorType: ActorType
  readonly actor: string
  readonly action: string
  readonly target: string | null
  readonly ip: string | null
}

export interface ActivityStore {
  recordActivity(event: ActivityInput): Promise<void>
  listActivity(tenantId: string, limit: number): Promise<ActivityEvent[]>
  /** Whether the tenant's Activity holds a line of this action and target (a leak reported already). */
  hasActivity(tenantId: string, action: string, target: string): Promise<boolean>
}

interface ActivityRow {
  id: number | string
  tenant_id: string
  at: Time
  actor_type: ActorType
  actor: string
  action: string
  target: string | null
  ip: string | null
}

const activityFromRow = (row: ActivityRow): ActivityEvent => ({
  id: Number(row.id),
  tenantId: row.tenant_id,
  at: toDate(row.at),
  actorType: row.actor_type,
  actor: row.actor,
  action: row.action,
  target: row.target,
  ip: row.ip,
})

export function sqliteActivity(db: SqliteDatabase): ActivityStore {
  const q = {
    recordActivity: db.prepare(
      'INSERT INTO saiku_activity (tenant_id, at, actor_type, actor, action, target, ip) VALUES (@tenant_id, @at, @actor_type, @actor, @action, @target, @ip)',
    ),
    listActivity: db.prepare<[string, number], ActivityRow>(
      'SELECT * FROM saiku_activity WHERE tenant_id = ? ORDER BY id DESC LIMIT ?',
    ),
    hasActivity: db.prepare<[string, string, string], { found: number }>(
      'SELECT 1 AS found FROM saiku_activity WHERE tenant_id = ? AND action = ? AND target = ? LIMIT 1',
    ),
  }

  return {
    async recordActivity(e) {
      q.recordActivity.run({
        tenant_id: e.tenantId,
        at: (e.at ?? new Date()).getTime(),
        actor_type: e.actorType,
        actor: e.actor,
        action: e.action,
        target: e.target ?? null,
        ip: e.ip ?? null,
      })
    },
    async listActivity(tenantId, limit) {
      return q.listActivity.all(tenantId, limit).map(activityFromRow)
    },
    async hasActivity(tenantId, action, target) {
      return q.hasActivity.get(tenantId, action, target) !== undefined
    },
  }
}

export function postgresActivity({ tables: t, query }: PostgresTables): ActivityStore {
  return {
    async recordActivity(e) {
      await query(
        `INSERT INTO ${t.activity} (tenant_id, at, actor_type, actor, action, target, ip) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        [e.tenantId, e.at ?? new Date(), e.actorType, e.actor, e.action, e.target ?? null, e.ip ?? null],
      )
    },
    async listActivity(tenantId, limit) {
      const { rows } = await query<ActivityRow>(
        `SELECT * FROM ${t.activity} WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2`,
        [tenantId, limit],
      )
      return rows.map(activityFromRow)
    },
    async hasActivity(tenantId, action, target) {
      const { rows } = await query(
        `SELECT 1 FROM ${t.activity} WHERE tenant_id = $1 AND action = $2 AND target = $3 LIMIT 1`,
        [tenantId, action, target],
      )
      return rows.length > 0
    },
  }
}
