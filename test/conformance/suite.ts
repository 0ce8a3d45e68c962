import { describeClientAddresses } from './addresses.js'
import { describeCost } from './cost.js'
import { describeCredentials } from './credentials.js'
import { describeErrors } from './errors.js'
import type { AdapterHarness } from './harness.js'
import { describeHooks } from './hooks.js'
import { describeMounting } from './mounting.js'
import { describePermissionsAndTenants } from './permissions.js'
import { describeRealmConformance } from './realm.js'
import { describeRateLimits } from './rate-limits.js'
import { describeReportOnly } from './report-only.js'
import { describeSubscription } from './subscription.js'

/**
 * The conformance suite, one file per concern, each a function of the harness. It holds
 * what an adapter can get wrong: the request mapped in (headers as sent, URL, mount point,
 * client address), the decision written out (status, headers, JSON body), the principal
 * handed to the app, and errors answered once. What only the core decides is tested once
 * in @saiku/core (packages/core/src/pipeline-decisions.test.ts and its neighbours).
 */
export const conformanceConcerns: readonly ((harness: AdapterHarness) => void)[] = [
  describeCredentials,
  describeSubscription,
  describePermissionsAndTenants,
  describeErrors,
  describeRateLimits,
  describeClientAddresses,
  describeMounting,
  describeCost,
  describeReportOnly,
  describeRealmConformance,
  describeHooks,
]

/** Every concern against one harness. */
export function describeAdapterConformance(harness: AdapterHarness): void {
  for (const describeConcern of conformanceConcerns) describeConcern(harness)
}
