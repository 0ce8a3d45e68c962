import type { AuthRequest, CostRequest, TenantView } from './decision.js'
import { SaikuConfigError } from './errors.js'
import { routePath } from './route-path.js'
import { callHook, type HookAnswer } from './user-hooks.js'

/** What the `cost` option said of a request it could not price: what it threw or rejected with, or why its answer is no cost. */
export interface CostProblem {
  readonly error: unknown
}

/** The cost of a request, or what stopped its pricing; a promise when the `cost` option is async. */
export type PricedRequest = number | CostProblem | Promise<number | CostProblem>

/** The `cost` option's answer for a request: a whole number of units, 0 or more. Never throws or rejects. */
export function requestCost(
  costOf: (request: CostRequest) => number | PromiseLike<number>,
  request: AuthRequest,
  tenant: TenantView,
): PricedRequest {
  const answer = callHook(() => costOf({ method: request.method, path: routePath(request), tenant, request }))
  return answer instanceof Promise ? answer.then(priced) : priced(answer)
}

function priced(answer: HookAnswer<unknown>): number | CostProblem {
  if (!answer.ok) return { error: answer.error }
  const { value } = answer
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value
  return { error: new SaikuConfigError('cost', 'a whole number of units, 0 or more', value) }
}
