import type { CostRequest } from '@saiku/core'

/**
 * What each route takes from a tenant's limits, in requests. Reading usage must
 * not spend it, so `GET /me/usage` and `GET /me/usage/history` cost 0: it is neither counted nor refused by
 * the limits, and its response still carries the rate-limit fields as they stand.
 * Every other route costs 1. (`GET /healthz` answers before any key is asked for,
 * so it never reaches the limits at all.)
 */
export function routeCost({ method, path }: CostRequest): number {
  if (method !== 'GET' && method !== 'HEAD') return 1
  const route = path.toLowerCase().replace(/\/+$/, '')
  if (route === '/me/usage' || route === '/me/usage/history') return 0
  return 1
}
