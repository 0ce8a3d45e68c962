import type { Logger } from 'pino'
import type { DecisionEvent } from '@saiku/core'

export interface RefusalLogOptions {
  /** How often repeated refusals are summed up into one line each. Default 10000. */
  readonly intervalMs?: number | undefined
  /** Most (address, reason) pairs counted within one interval; the rest are summed into one line. Default 10000. */
  readonly maxPairs?: number | undefined
}

interface Tally {
  readonly enforced: boolean
  readonly ip: string | null
  readonly reason: string
  readonly status: number
  readonly path: string
  count: number
}

/**
 * Logs refusals without letting a flood become a disk flood: the first refusal
 * of an (address, reason) pair in an interval is logged at once, in full; the
 * ones after it are only counted, and logged as one line per pair when the
 * interval ends (`refused (repeated)`, with `count`). A refusal that report-only
 * mode did not apply is logged the same way as `would refuse (report-only)`. So a flood costs about
 * one line per address and reason per interval, whatever its rate.
 */
export function createRefusalLog(
  logger: Logger,
  options: RefusalLogOptions = {},
): { record(event: DecisionEvent): void; flush(): void; close(): void } {
  const intervalMs = options.intervalMs ?? 10_000
  const maxPairs = options.maxPairs ?? 10_000
  let tallies = new Map<string, Tally>()
  let overflow = 0

  function flush(): void {
    const ended = tallies
    tallies = new Map()
    for (const tally of ended.values()) {
      if (tally.count === 0) continue
      logger.info({
        msg: tally.enforced ? 'refused (repeated)' : 'would refuse (repeated, report-only)',
        reason: tally.reason,
        status: tally.status,
        ip: tally.ip,
        lastPath: tally.path,
        count: tally.count,
        intervalMs,
      })
    }
    if (overflow > 0)
      logger.warn({ msg: 'refused (repeated, more addresses than counted)', count: overflow, intervalMs })
    overflow = 0
  }
  const timer = setInterval(flush, intervalMs)
  timer.unref()

  return {
    record(event) {
      const ip = event.ip ?? null
      const pair = `${ip ?? ''}\u0000${event.reason}\u0000${event.enforced ? '' : 'report-only'}`
      const tally = tallies.get(pair)
      if (tally !== undefined) {
        tally.count++
        return
      }
      if (tallies.size >= maxPairs) {
        overflow++
        return
      }
      tallies.set(pair, {
        enforced: event.enforced,
        ip,
        reason: event.reason,
        status: event.status,
        path: event.path,
        count: 0,
      })
      logger.info({
        msg: event.enforced ? 'refused' : 'would refuse (report-only)',
        reason: event.reason,
        status: event.status,
        path: event.path,
        tenantId: event.tenantId,
        keyId: event.keyId,
        ip,
      })
    },
    flush,
    close() {
      clearInterval(timer)
      flush()
    },
  }
}
