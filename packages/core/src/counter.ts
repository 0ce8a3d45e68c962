import { asStoreError, SaikuStoreError } from './errors.js'
import type { LimitDecision } from './limiter.js'
import type { ChosenLimiter } from './limiter-choice.js'
import { withTimeout } from './timeout.js'
import type { WindowLimits } from './tiers.js'

/**
 * The chosen limiter as the pipeline asks it: at once when the backend can answer
 * synchronously, else under its deadline (`limiter.timeoutMs`).
 */
export interface Counter {
  /** Takes `cost` from both windows; rejects when the backend fails, never throws. `nowMs`: the request's clock. */
  consume(tenantId: string, limits: WindowLimits, cost: number, nowMs: number): LimitDecision | Promise<LimitDecision>
  /** The counts as they stand, counting nothing; null when the backend cannot read them or failed (reported). */
  peek(tenantId: string, limits: WindowLimits): LimitDecision | null | Promise<LimitDecision | null>
  /**
   * After `consume` failed: reports the error; null when the limiter fails closed, else the
   * count of the insurance limiter in this process (`limiter.insurance`), null without one or when it fails too.
   */
  failed(error: unknown, tenantId: string, limits: WindowLimits, cost: number): Promise<LimitDecision | null> | null
}

/**
 * The quota a decision leaves out though the limits set it, or null. A backend written before
 * quotas answers minute and hour only: taking that as admitted would skip the quota silently.
 */
export function missingQuota(limits: WindowLimits, decision: LimitDecision): SaikuStoreError | null {
  const quota =
    limits.perDay !== undefined && decision.day === undefined
      ? 'day'
      : limits.perMonth !== undefined && decision.month === undefined
        ? 'month'
        : null
  if (quota === null) return null
  const field = quota === 'day' ? 'perDay' : 'perMonth'
  return new SaikuStoreError(
    'limiter',
    `the limiter backend cannot count quotas: the limits set ${field} but its decision has no ${quota} window`,
  )
}

/** `decision`, or a rejection when it leaves out a quota the limits set. */
function withQuotas(limits: WindowLimits, decision: LimitDecision): LimitDecision | Promise<never> {
  const missing = missingQuota(limits, decision)
  return missing === null ? decision : Promise.reject(missing)
}

export function createCounter(chosen: ChosenLimiter, failsOpen: boolean, reportError: (error: Error) => void): Counter {
  const { limiter, timeoutMs, insurance, sharesClock } = chosen
  const peekFailed = (error: unknown): null => {
    reportError(asStoreError(error, 'limiter', 'rate limiter peek failed'))
    return null
  }

  /** A backend call under its deadline; a synchronous throw rejects like a failed call. */
  function call<T>(start: () => Promise<T>): Promise<T> {
    try {
      const promise = start()
      return timeoutMs === 0 ? promise : withTimeout(promise, timeoutMs, 'limiter', 'rate limiter')
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)))
    }
  }

  async function insure(tenantId: string, limits: WindowLimits, cost: number): Promise<LimitDecision | null> {
    try {
      if (insurance === null) return null
      const decision = await insurance.consume(tenantId, limits, cost)
      // An insurance that cannot count the quotas insures nothing: closed, as when it fails.
      return missingQuota(limits, decision) === null ? decision : null
    } catch {
      return null
    }
  }

  return {
    consume(tenantId, limits, cost, nowMs) {
      const quotas = limits.perDay !== undefined || limits.perMonth !== undefined
      if (limiter.consumeSync === undefined) {
        const decided = call(() => limiter.consume(tenantId, limits, cost))
        return quotas ? decided.then((decision) => withQuotas(limits, decision)) : decided
      }
      try {
        // The memory backend the options built reads the same clock: the request's reading saves it a read.
        const decision = sharesClock
          ? limiter.consumeSync(tenantId, limits, cost, nowMs)
          : limiter.consumeSync(tenantId, limits, cost)
        return quotas && !sharesClock ? withQuotas(limits, decision) : decision
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)))
      }
    },
    peek(tenantId, limits) {
      const checked = (decision: LimitDecision): LimitDecision | null => {
        const missing = missingQuota(limits, decision)
        return missing === null ? decision : peekFailed(missing)
      }
      if (limiter.peekSync !== undefined) {
        try {
          return checked(limiter.peekSync(tenantId, limits))
        } catch (error) {
          return peekFailed(error)
        }
      }
      if (limiter.peek === undefined) return null
      return call(() => limiter.peek!(tenantId, limits)).then(checked, peekFailed)
    },
    failed(error, tenantId, limits, cost) {
      reportError(error instanceof SaikuStoreError ? error : asStoreError(error, 'limiter', 'rate limiter failed'))
      if (!failsOpen) return null
      return insure(tenantId, limits, cost)
    },
  }
}
