import type { AuthRequest, Outcome } from './decision.js'
import type { FailureBudget, Gate, LookupSlot, StoreCallEnd } from './failure-budget.js'
import { KEY_ID_LENGTH } from './keys.js'
import type { Refusals } from './refusals.js'
import { withTimeout } from './timeout.js'
import type { KeyVerifier, VerifyResult } from './verifier.js'

/** A store lookup of an API key that went through its client's failure budget. */
export interface Lookup {
  /** The key verified: an allowance point it spent comes back. */
  verified(): void
}

const FREE: Lookup = Object.freeze({ verified() {} })

/** What the verifier said of a token, with the budget lookup it went through (null: none, a signed token). */
export type LookupAnswered = (result: VerifyResult, lookup: Lookup | null, signed: boolean) => Outcome

export interface KeyLookupParts {
  readonly verifier: KeyVerifier
  readonly failureBudget: FailureBudget | null
  /** The client address as the failure budget counts it. */
  readonly clientOf: (request: AuthRequest) => string
  /** A verifier of the user's: it promises no single flight, so each API key lookup takes its own place. */
  readonly userVerifier: boolean
  /** A verifier of the user's or JWT: its answer is awaited under `timeoutMs`. */
  readonly customVerifier: boolean
  readonly timeoutMs: number
  readonly refusals: Refusals
}

/** How a verifier's own answer ends, for one that tells nothing of its store calls. */
function endOf(result: VerifyResult): StoreCallEnd {
  return result.ok ? 'found' : 'absent'
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

  function ask(request: AuthRequest, token: string, answered: LookupAnswered, slot: LookupSlot | null): Outcome {
    const signed = !token.startsWith('sk_')
    const lookup = signed ? null : (slot ?? FREE)
    let verified: VerifyResult | Promise<VerifyResult>
    try {
      verified = verifier.verify(token)
    } catch (error) {
      slot?.release()
      return refusals.keyStoreFailed(request, error)
    }
    if (!(verified instanceof Promise)) {
      // Given back even when the decision throws (a user's hook): a place lost would never come back.
      try {
        return answered(verified, lookup, signed)
      } finally {
        slot?.release()
      }
    }
    if (slot !== null) {
      // The place is held until the store call itself settles, which may be long after this request's deadline.
      const call = parts.userVerifier ? undefined : verifier.storeCallOf?.(slot.keyId)
      slot.holdUntil(call ?? verified.then(endOf))
    }
    const pending = parts.customVerifier ? withTimeout(verified, parts.timeoutMs, 'key_store', 'verifier') : verified
    return pending.then(
      (result) => {
        try {
          return answered(result, lookup, signed)
        } finally {
          slot?.answered()
        }
      },
      (error: unknown) => {
        slot?.abandon()
        return refusals.keyStoreFailed(request, error)
      },
    )
  }

  function passed(request: AuthRequest, token: string, answered: LookupAnswered, gate: Gate): Outcome {
    if (gate.kind === 'over') return refusals.tooManyFailures(request, gate.waitMs)
    if (gate.kind === 'busy') return refusals.lookupsBusy(request, gate.waitMs)
    return ask(request, token, answered, gate.kind === 'slot' ? gate.slot : null)
  }

  return (request, token, answered) => {
    if (failureBudget === null || !token.startsWith('sk_')) return ask(request, token, answered, null)
    // An API key that parsed has its key ID at a fixed place.
    const keyId = token.slice(8, 8 + KEY_ID_LENGTH)
    const gate = failureBudget.gate(parts.clientOf(request), keyId, !parts.userVerifier)
    return gate instanceof Promise
      ? gate.then((settled) => passed(request, token, answered, settled))
      : passed(request, token, answered, gate)
  }
}
