// The floor: the least a limiter that sends the IETF RateLimit fields has to do per
// request. The tenant comes from a Map keyed by the raw bearer token (no checksum, no
// hash), one fixed-window counter per window, and the two fields saikuAuth sends by
// default, with the same names and the same shape of value. Nothing else: no hooks,
// no failure budget, no principal.
import { BENCH_TIERS, TENANT } from './variants.js'

export interface FloorAdmitted {
  readonly tenant: typeof TENANT
  /** `RateLimit-Policy`: the same for every request of the tier. */
  readonly policy: string
  /** `RateLimit`: what is left of each window and when it starts over. */
  readonly rateLimit: string
}

interface Counts {
  readonly tenant: typeof TENANT
  minuteStartMs: number
  minuteCount: number
  hourStartMs: number
  hourCount: number
}

/** Admitted (with both fields' values), `401` for no or an unknown token, `429` over a limit. */
export function createFloor(key: string): (authorization: string | undefined) => FloorAdmitted | 401 | 429 {
  const { perMinute, perHour } = BENCH_TIERS.bench
  const policy = `"minute";q=${perMinute};w=60, "hour";q=${perHour};w=3600`
  const byToken = new Map<string, Counts>([
    [key, { tenant: TENANT, minuteStartMs: 0, minuteCount: 0, hourStartMs: 0, hourCount: 0 }],
  ])
  return (authorization) => {
    // "Bearer <token>", the scheme in any case.
    if (
      authorization === undefined ||
      authorization.length < 8 ||
      authorization.slice(0, 7).toLowerCase() !== 'bearer '
    )
      return 401
    const counts = byToken.get(authorization.slice(7))
    if (counts === undefined) return 401
    const nowMs = Date.now()
    if (nowMs >= counts.minuteStartMs + 60_000) {
      counts.minuteStartMs = nowMs
      counts.minuteCount = 0
    }
    if (nowMs >= counts.hourStartMs + 3_600_000) {
      counts.hourStartMs = nowMs
      counts.hourCount = 0
    }
    if (counts.minuteCount >= perMinute || counts.hourCount >= perHour) return 429
    const minuteLeft = perMinute - ++counts.minuteCount
    const hourLeft = perHour - ++counts.hourCount
    const minuteReset = Math.ceil((counts.minuteStartMs + 60_000 - nowMs) / 1000)
    const hourReset = Math.ceil((counts.hourStartMs + 3_600_000 - nowMs) / 1000)
    return {
      tenant: counts.tenant,
      policy,
      rateLimit: `"minute";r=${minuteLeft};t=${minuteReset}, "hour";r=${hourLeft};t=${hourReset}`,
    }
  }
}

export const FLOOR_REFUSALS = {
  401: JSON.stringify({ error: 'unauthorized', message: 'Missing or invalid API key.' }),
  429: JSON.stringify({ error: 'rate_limited', message: 'Rate limit exceeded.' }),
} as const
