// The floor: the least a limiter that sends the IETF RateLimit fields has to do per
// request. The tenant comes from a Map keyed by the raw bearer token (no checksum, no
// hash), one fixed-window counter per window, and the two fields saikuAuth sends by
// default, with the same names and the same shape of value. Nothing else: no hooks,
// no failure budget, no principal.
//
// The hashing floor: the floor, but keeping no plaintext key. The token's SHA-256 finds
// the record, and the presented digest is compared with the stored one in constant
// time (`timingSafeEqual`), as a verifier that keeps only digests must: the least such
// a verifier pays on top of the floor.
import { hash, timingSafeEqual } from 'node:crypto'
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

export type FloorCheck = (authorization: string | undefined) => FloorAdmitted | 401 | 429

// As a verifier takes it: a 32-character latin1 string (the typings leave latin1 out).
const sha256Latin1 = (data: string): string =>
  (hash as (algorithm: string, data: string, encoding: string) => string)('sha256', data, 'latin1')

/** The token of "Bearer <token>", the scheme in any case; undefined for anything else. */
function bearerToken(authorization: string | undefined): string | undefined {
  if (authorization === undefined || authorization.length < 8 || authorization.slice(0, 7).toLowerCase() !== 'bearer ')
    return undefined
  return authorization.slice(7)
}

const freshCounts = (): Counts => ({ tenant: TENANT, minuteStartMs: 0, minuteCount: 0, hourStartMs: 0, hourCount: 0 })

/** Admitted (with both fields' values), `401` for no or an unknown token, `429` over a limit. */
export function createFloor(key: string): FloorCheck {
  const byToken = new Map<string, Counts>([[key, freshCounts()]])
  const count = counter()
  return (authorization) => {
    const token = bearerToken(authorization)
    const counts = token === undefined ? undefined : byToken.get(token)
    return counts === undefined ? 401 : count(counts)
  }
}

/** The floor keeping only the key's SHA-256: the presented token's digest finds it, then a constant-time compare. */
export function createHashingFloor(key: string): FloorCheck {
  const digest = sha256Latin1(key)
  const byDigest = new Map<string, Counts & { readonly digest: Buffer }>([
    [digest, { ...freshCounts(), digest: Buffer.from(digest, 'latin1') }],
  ])
  const presented = Buffer.alloc(32)
  const count = counter()
  return (authorization) => {
    const token = bearerToken(authorization)
    if (token === undefined) return 401
    const presentedDigest = sha256Latin1(token)
    const counts = byDigest.get(presentedDigest)
    if (counts === undefined) return 401
    presented.write(presentedDigest, 0, 32, 'latin1')
    return timingSafeEqual(presented, counts.digest) ? count(counts) : 401
  }
}

/** One fixed-window count of each window: the fields' values, or 429 over a limit. */
function counter(): (counts: Counts) => FloorAdmitted | 429 {
  const { perMinute, perHour } = BENCH_TIERS.bench
  const policy = `"minute";q=${perMinute};w=60, "hour";q=${perHour};w=3600`
  return (counts) => {
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
