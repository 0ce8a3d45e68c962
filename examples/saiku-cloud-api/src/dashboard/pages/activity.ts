import type { Router } from 'express'
import type { Logger } from 'pino'
import type { SettlementRecorder } from '../../billing.js'
import type { DashboardContext } from '../shared/context.js'
import { PERIOD_END_ACTOR, systemActorLabel, type DashboardStore } from '../store/index.js'

const ACTIONS: Record<string, string> = {
  'key.created': 'Key created',
  'key.revoked': 'Key revoked',
  'key.updated': 'Key edited',
  'key.rotated': 'Key rotated',
  'key.address_refused': 'Key refused from an address not allowed',
  'key.leaked': 'Key found leaked',
  'trial.started': 'Trial started',
  'plan.changed': 'Plan changed',
  'subscription.canceled': 'Subscription ended',
  'plan.change_scheduled': 'Plan change scheduled',
  'plan.change_dropped': 'Scheduled plan change dropped',
  'subscription.cancel_scheduled': 'Cancellation scheduled',
  'subscription.cancel_undone': 'Cancellation undone',
  sign_in: 'Signed in',
  'sign_in.refused': 'Sign-in refused',
  'sign_in.throttled': 'Sign-in throttled',
  'member.added': 'Member added',
  'member.removed': 'Member removed',
  'member.invited': 'Member invited',
  'member.invitation_revoked': 'Invitation withdrawn',
  'member.joined': 'Member joined',
  'member.role_changed': 'Role changed',
  'member.password_reset': 'Password reset',
  'member.password_changed': 'Password changed',
  'member.password_change_refused': 'Password change refused',
  'sign_in.code_refused': 'Sign-in code refused',
  'sign_in.code_throttled': 'Sign-in codes throttled',
  'reauth.refused': 'Access confirmation refused',
  'session.ended': 'Session ended',
  'two_factor.enabled': 'Two-factor turned on',
  'two_factor.disabled': 'Two-factor turned off',
  'two_factor.recovery_codes_replaced': 'New recovery codes',
  'two_factor.required': 'Two-factor required',
  'two_factor.not_required': 'Two-factor no longer required',
  'two_factor.reset': 'Two-factor reset',
  'webhook.added': 'Webhook endpoint added',
  'webhook.removed': 'Webhook endpoint removed',
  'webhook.secret_rotated': 'Webhook secret rotated',
}

/** The tenant's Activity log, newest first. */
export function registerActivity(router: Router, ctx: DashboardContext): void {
  const { dashboard, page, signedIn, render } = ctx

  router.get('/activity', ...page, signedIn, (req, res, next) => {
    dashboard.listActivity(req.dashboard!.tenant.tenantId, 200).then((events) => {
      render(res, 200, 'activity', {
        title: 'Activity',
        events: events.map((e) => ({
          ...e,
          label: ACTIONS[e.action] ?? e.action,
          who: e.actorType === 'system' ? systemActorLabel(e.actor) : null,
        })),
      })
    }, next)
  })
}

/** Records what API keys do through the JSON API in the Activity log. */
export function recordApiAction(dashboard: DashboardStore, logger: Logger) {
  return (event: {
    tenantId: string
    keyId: string
    action: string
    target?: string | null
    ip?: string | undefined
  }) => {
    dashboard
      .recordActivity({
        tenantId: event.tenantId,
        actorType: 'api_key',
        actor: event.keyId,
        action: event.action,
        target: event.target ?? null,
        ip: event.ip ?? null,
      })
      .catch((error: unknown) =>
        logger.error({ msg: 'activity write failed', err: { message: (error as Error).message } }),
      )
  }
}

/** Records the downgrades and cancellations that a period end applied, as the `system` actor. */
export function recordSettlement(dashboard: DashboardStore, logger: Logger): SettlementRecorder {
  return async (tenantId, activity, at) => {
    try {
      await dashboard.recordActivity({
        tenantId,
        actorType: 'system',
        actor: PERIOD_END_ACTOR,
        action: activity.action,
        target: activity.target,
        at,
      })
    } catch (error) {
      logger.error({ msg: 'activity write failed', err: { message: (error as Error).message } })
    }
  }
}
