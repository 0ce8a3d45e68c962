import type { TenantRecord } from '@saiku/core'
import { ConfigError } from './config.js'

/** The reference server's roll-out and monitoring settings, beside `readConfig()`'s. */
export interface OperationsConfig {
  /** REPORT_ONLY_LIMITS: whose limits are reported but not enforced; false for none. */
  readonly reportOnlyLimits: boolean | { readonly tiers: readonly string[]; readonly tenants: readonly string[] }
  /** METRICS_PORT: where Prometheus metrics are served; undefined for none. */
  readonly metricsPort: number | undefined
  /** METRICS_HOST: default loopback, so the metrics are not on the API's network unless asked. */
  readonly metricsHost: string
}

/**
 * REPORT_ONLY_LIMITS: `all`, or a comma-separated list of `tier:NAME` and
 * `tenant:ID` (or `tenant:SLUG`); empty or unset for none. Only the syntax is
 * checked here: {@link resolveReportOnlyLimits} checks the names against the
 * tier table and the store.
 */
export function readReportOnlyLimits(value: string | undefined): OperationsConfig['reportOnlyLimits'] {
  if (value === undefined || value.trim() === '') return false
  if (value.trim() === 'all') return true
  const tiers: string[] = []
  const tenants: string[] = []
  for (const entry of value.split(',').map((part) => part.trim())) {
    const match = /^(tier|tenant):([\w.-]{1,128})$/.exec(entry)
    if (match === null)
      throw new ConfigError(
        `REPORT_ONLY_LIMITS: expected "all" or a list of tier:NAME and tenant:ID, got ${JSON.stringify(entry)}`,
      )
    ;(match[1] === 'tier' ? tiers : tenants).push(match[2]!)
  }
  return { tiers, tenants }
}

/**
 * The tiers and tenants of REPORT_ONLY_LIMITS as the authenticator takes them:
 * tier names as the tier table spells them (`tier:Starter` is `starter`), and
 * tenant IDs, a slug resolved to its tenant's ID. A name that matches nothing
 * would silently enforce what the operator meant to report only: refused.
 */
export async function resolveReportOnlyLimits(
  limits: OperationsConfig['reportOnlyLimits'],
  tierNames: readonly string[],
  store: {
    findTenant(tenantId: string): Promise<TenantRecord | null>
    findTenantBySlug(tenantSlug: string): Promise<TenantRecord | null>
  },
): Promise<OperationsConfig['reportOnlyLimits']> {
  if (typeof limits === 'boolean') return limits
  const tiers = limits.tiers.map((name) => {
    const tier =
      tierNames.find((known) => known === name) ?? tierNames.find((known) => known.toLowerCase() === name.toLowerCase())
    if (tier === undefined)
      throw new ConfigError(`REPORT_ONLY_LIMITS: no tier named "${name}"; the tiers are ${tierNames.join(', ')}`)
    return tier
  })
  const tenants: string[] = []
  for (const name of limits.tenants) {
    const tenant = (await store.findTenant(name)) ?? (await store.findTenantBySlug(name))
    if (tenant === null) throw new ConfigError(`REPORT_ONLY_LIMITS: no tenant has the ID or slug "${name}"`)
    tenants.push(tenant.tenantId)
  }
  return { tiers: [...new Set(tiers)], tenants: [...new Set(tenants)] }
}

/**
 * METRICS_PORT must not be the API's PORT: the second listen would fail with
 * EADDRINUSE. Port 0 (any free port) for both is fine.
 */
export function checkMetricsPort(port: number, metricsPort: number | undefined): void {
  if (metricsPort !== undefined && metricsPort !== 0 && metricsPort === port)
    throw new ConfigError(
      `METRICS_PORT: must differ from PORT (both are ${port}); the metrics are served apart from the API`,
    )
}

export function readOperationsConfig(env: NodeJS.ProcessEnv = process.env): OperationsConfig {
  const metricsPort = env.METRICS_PORT === undefined || env.METRICS_PORT === '' ? undefined : Number(env.METRICS_PORT)
  if (metricsPort !== undefined && (!/^\d{1,5}$/.test(env.METRICS_PORT!) || metricsPort > 65_535)) {
    throw new ConfigError(`METRICS_PORT: expected 0 to 65535, got ${JSON.stringify(env.METRICS_PORT)}`)
  }
  return {
    reportOnlyLimits: readReportOnlyLimits(env.REPORT_ONLY_LIMITS),
    metricsPort,
    metricsHost: env.METRICS_HOST || '127.0.0.1',
  }
}
