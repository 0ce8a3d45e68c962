import type { AuthRequest, DecisionEvent, DecisionReason } from './decision.js'
import type { WireCode } from './errors.js'
import type { CoreMetrics } from './metrics.js'
import type { ResolvedOptions } from './options.js'
import { reportedPath } from './reported-path.js'
import { requestIp } from './route-path.js'

/** Tells `onDecision` and the metrics what was decided. */
export type DecisionReporter = (
  request: AuthRequest,
  status: number,
  code: WireCode | null,
  reason: DecisionReason,
  keyId: string | null,
  tenantId: string | null,
  enforced?: boolean,
) => void

// Observers never change an outcome: a hook that throws is ignored.

export function createErrorReporter(options: ResolvedOptions): (error: Error) => void {
  const { onError } = options
  return (error) => {
    try {
      onError?.(error)
    } catch {
      // A failing hook must not turn a decision into a crash.
    }
  }
}

/** `tierOf`: the tier of a tenant the request got as far as (its record is cached by then). */
export function createDecisionReporter(
  options: ResolvedOptions,
  metrics: CoreMetrics | null,
  tierOf: (tenantId: string) => string | null,
): DecisionReporter {
  const { onDecision } = options
  return (request, status, code, reason, keyId, tenantId, enforced = true) => {
    if (metrics !== null)
      metrics.decision(status, reason, tenantId === null ? null : tierOf(tenantId), enforced, tenantId)
    if (onDecision === undefined) return
    try {
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
      onDecision(event)
    } catch {
      // Observers never change an outcome.
    }
  }
}
