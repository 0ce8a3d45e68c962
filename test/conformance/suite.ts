import { beforeEach, describe, expect, it, type RunnerTask, type RunnerTestSuite } from 'vitest'
import { describeClientAddresses } from './addresses.js'
import { describeCost } from './cost.js'
import { describeCredentials } from './credentials.js'
import { describeErrors } from './errors.js'
import type { AdapterHarness } from './harness.js'
import { describeHooks } from './hooks.js'
import { describeMounting } from './mounting.js'
import { describePermissionsAndTenants } from './permissions.js'
import { describePreflight } from './preflight.js'
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
  describePreflight,
]

/** The full names of the cases below a suite: each `describe` and the case, joined by " > ". */
function caseNames(suite: RunnerTestSuite, prefix = ''): string[] {
  return suite.tasks.flatMap((task) =>
    task.type === 'suite' ? caseNames(task, `${prefix}${task.name} > `) : [`${prefix}${task.name}`],
  )
}

/** Every concern against one harness; a case the harness declares not applicable is skipped with its reason. */
export function describeAdapterConformance(harness: AdapterHarness): void {
  const notApplicable = new Map(Object.entries(harness.notApplicable ?? {}))
  describe(harness.name, () => {
    beforeEach((context) => {
      // The case's name below this harness's describe, as caseNames() spells it.
      const names: string[] = []
      for (let task: RunnerTask | undefined = context.task; task !== undefined && task !== task.file; task = task.suite)
        names.unshift(task.name)
      const reason = notApplicable.get(names.slice(1).join(' > '))
      if (reason !== undefined) context.skip(`not applicable to ${harness.name}: ${reason}`)
    })
    for (const describeConcern of conformanceConcerns) describeConcern(harness)
    it('declares not applicable only cases that exist, each with a reason', (context) => {
      const names = new Set(caseNames(context.task.suite!))
      for (const [name, reason] of notApplicable) {
        expect(names.has(name), `${harness.name}: no case "${name}"`).toBe(true)
        expect(reason.trim(), `${harness.name}: "${name}" without a reason`).not.toBe('')
      }
    })
  })
}
