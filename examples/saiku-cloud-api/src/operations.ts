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
 * `tenant:ID`; empty or unset for none.
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
