import { ConfigError } from '../config.js'

export interface DashboardSettings {
  /** A session unused this long ends. Default 30 minutes. */
  readonly idleTimeoutSeconds: number
  /** A session ends this long after sign-in, used or not. Default 12 hours. */
  readonly absoluteTimeoutSeconds: number
  /**
   * Express's `trust proxy`: whose X-Forwarded-For and X-Forwarded-Proto to believe.
   * Behind a TLS-terminating proxy the app trusts, cookies become `Secure` with the `__Host-` prefix.
   */
  readonly trustProxy: boolean | number | string
  /**
   * The dashboard's origin as browsers see it (`https://saiku.example.com`), when the proxy's headers cannot
   * say it; forms must come from it, and its scheme decides `Secure` cookies. Null: taken from each request.
   */
  readonly publicOrigin: string | null
}

function seconds(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const value = env[name]
  if (value === undefined || value === '') return fallback
  if (!/^[1-9]\d{0,8}$/.test(value))
    throw new ConfigError(`${name}: expected a positive number of seconds, got ${JSON.stringify(value)}`)
  return Number(value)
}

/**
 * TRUST_PROXY: unset or "false" trusts nobody; a hop count, or addresses/subnets ("loopback", "10.0.0.0/8").
 * "true" (or a subnet holding every address) is refused: it believes any client's X-Forwarded-For, so every
 * client picks its own address, and with it its failed-authentication and sign-in budgets.
 */
function trustProxy(value: string | undefined): boolean | number | string {
  if (value === undefined || value === '' || value === 'false') return false
  if (value === 'true' || /(^|[\s,])(0\.0\.0\.0\/0|::\/0)($|[\s,])/.test(value))
    throw new ConfigError(
      `TRUST_PROXY: ${JSON.stringify(value)} lets any client choose its own address (X-Forwarded-For); give the number of proxies in front (e.g. 1) or their addresses (e.g. loopback, 10.0.0.0/8)`,
    )
  if (/^\d{1,2}$/.test(value)) return Number(value)
  if (!/^[\w.:/, -]+$/.test(value))
    throw new ConfigError(`TRUST_PROXY: expected a hop count or addresses, got ${JSON.stringify(value)}`)
  return value
}

/** PUBLIC_ORIGIN: a scheme, a host and an optional port, as an `Origin` header carries them. */
function publicOrigin(value: string | undefined): string | null {
  if (value === undefined || value === '') return null
  let url: URL | null = null
  try {
    url = new URL(value)
  } catch {
    // Reported below, with what was given.
  }
  if (
    url === null ||
    (url.protocol !== 'https:' && url.protocol !== 'http:') ||
    url.username !== '' ||
    url.password !== '' ||
    url.pathname !== '/' ||
    /[?#]/.test(value) ||
    !/^https?:\/\/[^/]+\/?$/i.test(value)
  ) {
    throw new ConfigError(
      `PUBLIC_ORIGIN: expected a scheme and host such as https://saiku.example.com (no path), got ${JSON.stringify(value)}`,
    )
  }
  return url.origin
}

export function readDashboardSettings(env: NodeJS.ProcessEnv = process.env): DashboardSettings {
  const idleTimeoutSeconds = seconds(env, 'SESSION_IDLE_TIMEOUT_SECONDS', 1_800)
  const absoluteTimeoutSeconds = seconds(env, 'SESSION_ABSOLUTE_TIMEOUT_SECONDS', 43_200)
  if (absoluteTimeoutSeconds < idleTimeoutSeconds) {
    throw new ConfigError(
      `SESSION_ABSOLUTE_TIMEOUT_SECONDS (${absoluteTimeoutSeconds}) must be at least SESSION_IDLE_TIMEOUT_SECONDS (${idleTimeoutSeconds})`,
    )
  }
  return {
    idleTimeoutSeconds,
    absoluteTimeoutSeconds,
    trustProxy: trustProxy(env.TRUST_PROXY),
    publicOrigin: publicOrigin(env.PUBLIC_ORIGIN),
  }
}
