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
      return insurance === null ? null : await insurance.consume(tenantId, limits, cost)
    } catch {
      return null
    }
  }

  return {
    consume(tenantId, limits, cost, nowMs) {
      if (limiter.consumeSync === undefined) return call(() => limiter.consume(tenantId, limits, cost))
      try {
        // The memory backend the options built reads the same clock: the request's reading saves it a read.
        return sharesClock
          ? limiter.consumeSync(tenantId, limits, cost, nowMs)
          : limiter.consumeSync(tenantId, limits, cost)
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)))
      }
    },
    peek(tenantId, limits) {
      if (limiter.peekSync !== undefined) {
        try {
          return limiter.peekSync(tenantId, limits)
        } catch (error) {
          return peekFailed(error)
        }
      }
      if (limiter.peek === undefined) return null
      return call(() => limiter.peek!(tenantId, limits)).catch(peekFailed)
    },
    failed(error, tenantId, limits, cost) {
      reportError(error instanceof SaikuStoreError ? error : asStoreError(error, 'limiter', 'rate limiter failed'))
      if (!failsOpen) return null
      return insure(tenantId, limits, cost)
    },
  }
}
