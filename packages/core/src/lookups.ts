import type { AuthRequest, Outcome } from './decision.js'
import type { FailureBudget, Reservation } from './failure-budget.js'
import { KEY_ID_LENGTH } from './keys.js'
import type { Refusals } from './refusals.js'
import { withTimeout } from './timeout.js'
import type { KeyVerifier, VerifyResult } from './verifier.js'

/** A store lookup of an API key that went through its client's failure budget. */
export interface Lookup {
  /** Whether it spent a point in advance: it stays spent if the key turns out not to verify. */
  readonly spent: boolean
  /** The key verified: what was spent is given back. */
  verified(): void
  /** The store failed, which is no failed authentication: what was spent is given back. */
  storeFailed(): void
  /** The lookup settled (either way). */
  done(): void
}

const FREE: Lookup = Object.freeze({ spent: false, verified() {}, storeFailed() {}, done() {} })

/**
 * Before asking the store about an API key that the cache could not answer:
 * the wait (ms) when the client is over its budget, else the lookup to settle.
 * With the default verifier (single-flight, cached), a lookup of a key ID that
 * is already in flight or verified here recently spends nothing; a custom
 * verifier promises neither, so each of its lookups spends in advance.
 */
export function startLookup(
  budget: FailureBudget,
  client: string,
  token: string,
  customVerifier: boolean,
): Lookup | number {
  // An API key that parsed has its key ID at a fixed place; for anything else it is only a name to join on.
  const keyId = token.slice(8, 8 + KEY_ID_LENGTH)
  if (customVerifier) {
    const spent = budget.spend(client)
    return typeof spent === 'number' ? spent : settle(budget, spent, () => {})
  }
  const reserved = budget.reserve(client, keyId)
  if (typeof reserved === 'number') return reserved
  const release = budget.lookupStarted(keyId)
  return reserved === null ? { ...FREE, done: release, storeFailed: release } : settle(budget, reserved, release)
}

function settle(budget: FailureBudget, reservation: Reservation, release: () => void): Lookup {
  let refunded = false
  const refund = (): void => {
    if (refunded) return
    refunded = true
    budget.refund(reservation)
  }
  return {
    spent: true,
    verified: refund,
    storeFailed() {
      refund()
      release()
    },
    done: release,
  }
}

/** What the verifier said of a token, with the budget lookup it went through (null: none). */
export type LookupAnswered = (result: VerifyResult, lookup: Lookup | null, signed: boolean) => Outcome

export interface KeyLookupParts {
  readonly verifier: KeyVerifier
  readonly failureBudget: FailureBudget | null
  /** The client address as the failure budget counts it. */
  readonly clientOf: (request: AuthRequest) => string
  /** A verifier of the user's: it promises no single flight, so each API key lookup spends in advance. */
  readonly userVerifier: boolean
  /** A verifier of the user's or JWT: its answer is awaited under `timeoutMs`. */
  readonly customVerifier: boolean
  readonly timeoutMs: number
  readonly refusals: Refusals
}

/**
 * A token the cache could not answer, asked of the verifier: an API key through
 * its client's failure budget (a signed token counts only when it fails), a
 * custom verifier under its deadline. A store that fails is refused here; what
 * the verifier said goes on to `answered`.
 */
export function createKeyLookup(
  parts: KeyLookupParts,
): (request: AuthRequest, token: string, answered: LookupAnswered) => Outcome {
  const { verifier, failureBudget, refusals } = parts
  return (request, token, answered) => {
    const signed = !token.startsWith('sk_')
    let verified: VerifyResult | Promise<VerifyResult>
    let lookup: Lookup | null = null
    try {
      if (failureBudget !== null && !signed) {
        const started = startLookup(failureBudget, parts.clientOf(request), token, parts.userVerifier)
        if (typeof started === 'number') return refusals.tooManyFailures(request, started)
        lookup = started
      }
      verified = verifier.verify(token)
    } catch (error) {
      lookup?.storeFailed()
      return refusals.keyStoreFailed(request, error)
    }
    if (!(verified instanceof Promise)) {
      lookup?.done()
      return answered(verified, lookup, signed)
    }
    const pending = parts.customVerifier ? withTimeout(verified, parts.timeoutMs, 'key_store', 'verifier') : verified
    return pending.then(
      (result) => {
        lookup?.done()
        return answered(result, lookup, signed)
      },
      (error: unknown) => {
        lookup?.storeFailed()
        return refusals.keyStoreFailed(request, error)
      },
    )
  }
}
