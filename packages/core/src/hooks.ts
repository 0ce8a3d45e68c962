import type { AuthRequest, DecisionEvent, DecisionReason } from './decision.js'
import type { WireCode } from './errors.js'
import type { CoreMetrics } from './metrics.js'
import type { ResolvedOptions } from './options.js'
import { reportedPath } from './reported-path.js'
import { requestIp } from './route-path.js'
import { usageOutcome, type UsageRecorder } from './usage-history.js'
import { asError, notifyHook, warnHookFailed } from './user-hooks.js'

/** Tells `onDecision` and the metrics what was decided. */
export type DecisionReporter = (
  request: AuthRequest,
  status: number,
  code: WireCode | null,
  reason: DecisionReason,
  keyId: string | null,
  tenantId: string | null,
  enforced?: boolean,
  /** A 429 of a day or month quota (usage history counts it apart from the minute and hour windows). */
  quota?: boolean,
) => void

// Observers never change an outcome: what `onDecision` throws or rejects with goes to `onError`,
// and what `onError` throws or rejects with becomes a process warning.

export function createErrorReporter(options: ResolvedOptions): (error: Error) => void {
  const { onError } = options
  if (onError === undefined) return () => {}
  const failed = (failure: unknown): void => warnHookFailed('onError', failure)
  return (error) => notifyHook(() => onError(error), failed)
}

/** `tierOf`: the tier of a tenant the request got as far as (its record is cached by then). */
export function createDecisionReporter(
  options: ResolvedOptions,
  metrics: CoreMetrics | null,
  tierOf: (tenantId: string) => string | null,
  reportError: (error: Error) => void,
  recorder: UsageRecorder | null = null,
): DecisionReporter {
  const { onDecision, onError } = options
  // Without an onError to hear it, a failing onDecision is still heard once, as a warning.
  const failed =
    onError === undefined
      ? (failure: unknown): void => warnHookFailed('onDecision', failure)
      : (failure: unknown): void => reportError(asError(failure))
  return (request, status, code, reason, keyId, tenantId, enforced = true, quota = false) => {
    if (recorder !== null && tenantId !== null) {
      const outcome = usageOutcome(status, reason, enforced, quota)
      if (outcome !== null) recorder.record(tenantId, keyId, outcome)
    }
    if (metrics !== null)
      metrics.decision(status, reason, tenantId === null ? null : tierOf(tenantId), enforced, tenantId)
    if (onDecision === undefined) return
    notifyHook(() => {
      const event: DecisionEvent = {
        status,
        code,
        reason,
        method: request.method,
        path: reportedPath(request.url),
        ip: requestIp(request),
        keyId,
        tenantId,
        enforced,
      }
      return onDecision(event)
    }, failed)
  }
}
