import type { AuthRequest, CostRequest, TenantView } from './decision.js'
import { SaikuConfigError } from './errors.js'
import { routePath } from './route-path.js'

/** What the `cost` option said of a request it could not price: what it threw, or why its answer is no cost. */
export interface CostProblem {
  readonly error: unknown
}

/** The `cost` option's answer for a request: a whole number of units, 0 or more. */
export function requestCost(
  costOf: (request: CostRequest) => number,
  request: AuthRequest,
  tenant: TenantView,
): number | CostProblem {
  let value: unknown
  try {
    value = costOf({ method: request.method, path: routePath(request), tenant, request })
  } catch (error) {
    return { error }
  }
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value
  return { error: new SaikuConfigError('cost', 'a whole number of units, 0 or more', value) }
}
