import type { Request } from 'express'
import type { Member } from '../store/index.js'
import type { DashboardContext } from './context.js'
import { minutesText } from './sign-in-throttle.js'
import { readCode, recoveryDigest, totpStep } from './two-factor.js'

// The check of a typed one-time or recovery code against a member's second factor, shared by the sign-in's
// code step and re-authentication, and the Activity lines of the code budget.

/**
 * `totp` or `recovery` when the code is right and now used (a TOTP step, or that recovery code, is never good
 * again); null when it is wrong, used already, or the member's secret cannot be opened.
 */
export async function useSecondFactor(
  ctx: DashboardContext,
  member: Member,
  typed: unknown,
): Promise<'totp' | 'recovery' | null> {
  const code = readCode(typed)
  if (code.kind === 'recovery')
    return (await ctx.dashboard.useRecoveryCode(member.memberId, recoveryDigest(code.code))) ? 'recovery' : null
  if (code.kind !== 'totp' || (member.totpSecret ?? null) === null) return null
  const secret = ctx.twoFactor.open(member.memberId, member.totpSecret!)
  if (secret === null) {
    ctx.logger.error({ msg: 'totp secret unreadable', memberId: member.memberId })
    return null
  }
  const step = totpStep(secret, code.token, ctx.clock())
  return step !== null && (await ctx.dashboard.useTotpStep(member.memberId, step)) ? 'totp' : null
}

/** The refusal of a code check the account's hour has no room for. */
export const hourSpentMessage = (retryAfterMs: number): string =>
  `Too many wrong codes or passwords for this account. Try again in ${minutesText(retryAfterMs)}.`

/** Records a throttled code check in Activity, at most once a minute per account. */
export async function recordCodeThrottled(
  ctx: DashboardContext,
  req: Request,
  member: Member,
  target: string,
): Promise<void> {
  if (!ctx.codeThrottle.shouldRecordRefusal(member.memberId)) return
  await ctx.dashboard.recordActivity({
    tenantId: member.tenantId,
    actorType: 'member',
    actor: member.email,
    action: 'sign_in.code_throttled',
    target,
    ip: req.ip ?? null,
  })
}
