import type { FailureBudget, Reservation } from './failure-budget.js'
import { KEY_ID_LENGTH } from './keys.js'

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
