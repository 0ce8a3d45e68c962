import { isAbsolute, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export interface ServerConfig {
  readonly port: number
  readonly host: string
  /** `sqlite:<path>` or `postgres://…` */
  readonly databaseUrl: string
  readonly redisUrl: string | undefined
  readonly logLevel: string
  /** How long in-flight requests get to finish after SIGTERM or SIGINT. */
  readonly shutdownTimeoutMs: number
  /** CORS_ORIGINS: the origins whose scripts may call the bearer routes under /me (not /me/tokens); empty for none. */
  readonly corsOrigins: readonly string[]
}

/** The default of SHUTDOWN_TIMEOUT_MS: with the 5 s cleanup bound, within the 10 s a container runtime waits before killing. */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 5_000

/** The example's own data folder: the default home of the SQLite file. */
export const DEFAULT_DATA_DIR = fileURLToPath(new URL('../data/', import.meta.url))

export class ConfigError extends Error {
  override readonly name = 'ConfigError'
}

/**
 * Relative `sqlite:` paths are resolved against the directory the command was
 * typed in (pnpm runs scripts elsewhere but keeps it in INIT_CWD).
 */
export function resolveDatabaseUrl(value: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (value === undefined || value === '') return `sqlite:${resolve(DEFAULT_DATA_DIR, 'saiku.db')}`
  if (value.startsWith('postgres://') || value.startsWith('postgresql://')) return serviceUrl('DATABASE_URL', value)
  if (!value.startsWith('sqlite:')) {
    throw new ConfigError(
      `DATABASE_URL: expected "sqlite:<path>" or "postgres://…", got ${JSON.stringify(value.split(':')[0] + ':…')}`,
    )
  }
  const path = value.slice('sqlite:'.length)
  if (path === '') throw new ConfigError('DATABASE_URL: "sqlite:" needs a file path, e.g. sqlite:data/saiku.db')
  if (path === ':memory:') return value
  return `sqlite:${isAbsolute(path) ? path : resolve(env.INIT_CWD ?? process.cwd(), path)}`
}

/**
 * A service's URL, which may carry its password: one that does not parse stops the start-up with
 * a line that shows it with everything between the scheme and the host hidden, never the URL
 * parser's error, which quotes it whole.
 */
function serviceUrl(name: string, value: string, schemes?: readonly string[]): string {
  let url: URL | null = null
  try {
    url = new URL(value)
  } catch {
    // Reported below.
  }
  if (url !== null && (schemes === undefined || schemes.includes(url.protocol))) return value
  const shown = JSON.stringify(value.replace(/^([^:]*:\/\/).*@/s, '$1…@').slice(0, 200))
  const expected = schemes === undefined ? 'a URL' : `a ${schemes.map((scheme) => `${scheme}//`).join(' or ')} URL`
  throw new ConfigError(`${name}: expected ${expected} such as ${EXAMPLE_URLS[name]}, got ${shown}`)
}

const EXAMPLE_URLS: Readonly<Record<string, string>> = {
  DATABASE_URL: 'postgres://user:password@localhost:5432/saiku',
  REDIS_URL: 'redis://localhost:6379',
}

/**
 * CORS_ORIGINS: a comma-separated list of exact origins (`https://app.example.com`,
 * `http://localhost:5173`), each as a browser sends it in `Origin`: scheme, host and a
 * port only where it is not the scheme's default, in lower case, nothing after it. An
 * entry in any other form would never match, so it stops the start-up. No `*`: each
 * front end that may call the API with its users' tokens is named.
 */
export function readCorsOrigins(value: string | undefined): readonly string[] {
  if (value === undefined || value.trim() === '') return []
  const origins = new Set<string>()
  for (const entry of value.split(',').map((part) => part.trim())) {
    // An entry with a user and password in it is shown without them, as serviceUrl shows a URL.
    const hidden = entry.replace(/^([^:]*:\/\/).*@/s, '$1…@')
    const shown = JSON.stringify(hidden.length > 200 ? `${hidden.slice(0, 200)}…` : hidden)
    if (entry === '*')
      throw new ConfigError('CORS_ORIGINS: "*" is not accepted: list each origin, e.g. https://app.example.com')
    let url: URL | null = null
    try {
      url = new URL(entry)
    } catch {
      // Reported below.
    }
    if (url === null || (url.protocol !== 'https:' && url.protocol !== 'http:'))
      throw new ConfigError(
        `CORS_ORIGINS: expected a comma-separated list of origins such as https://app.example.com, got ${shown}`,
      )
    if (url.origin !== entry) {
      // Said the way a browser would send it, when the entry only has a path of "/" or another spelling.
      const canonical =
        url.pathname === '/' && url.search === '' && url.hash === '' && url.username === '' && url.password === ''
      throw new ConfigError(
        `CORS_ORIGINS: expected an origin (scheme://host[:port], nothing after it), got ${shown}` +
          (canonical ? `; a browser sends ${JSON.stringify(url.origin)}` : ''),
      )
    }
    origins.add(entry)
  }
  return [...origins]
}

export function readConfig(env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const port = env.PORT === undefined || env.PORT === '' ? 3000 : Number(env.PORT)
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    throw new ConfigError(`PORT: expected 0 to 65535, got ${JSON.stringify(env.PORT)}`)
  const shutdown = env.SHUTDOWN_TIMEOUT_MS
  const shutdownTimeoutMs = shutdown === undefined || shutdown === '' ? DEFAULT_SHUTDOWN_TIMEOUT_MS : Number(shutdown)
  if (!/^\d{1,9}$/.test(shutdown ?? '0') || !Number.isSafeInteger(shutdownTimeoutMs) || shutdownTimeoutMs < 1) {
    throw new ConfigError(
      `SHUTDOWN_TIMEOUT_MS: expected a positive whole number of milliseconds, got ${JSON.stringify(shutdown)}`,
    )
  }
  return {
    port,
    host: env.HOST || '127.0.0.1',
    databaseUrl: resolveDatabaseUrl(env.DATABASE_URL, env),
    redisUrl: env.REDIS_URL ? serviceUrl('REDIS_URL', env.REDIS_URL, ['redis:', 'rediss:']) : undefined,
    logLevel: env.LOG_LEVEL || 'info',
    shutdownTimeoutMs,
    corsOrigins: readCorsOrigins(env.CORS_ORIGINS),
  }
}
