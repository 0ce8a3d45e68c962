// The services a test needs (Redis, PostgreSQL), found through the environment. This
// example's own tests use them, and so do the repository's: it is copied out alone.

/**
 * The URL of a service the tests need, from the environment. In CI a missing or
 * wrong one fails the run; on a developer machine the tests that need it skip
 * with a message saying how to run them.
 */
export function serviceUrl(variable: 'REDIS_URL' | 'DATABASE_URL', schemes: readonly string[]): string | undefined {
  const value = process.env[variable]
  if (value !== undefined && schemes.some((scheme) => value.startsWith(scheme))) return value
  const wanted = `${variable}=${schemes[0]}…`
  if (process.env.CI === 'true')
    throw new Error(
      `CI must provide ${wanted} (see .ci/run); got ${value === undefined ? 'nothing' : JSON.stringify(value.split(':')[0])}`,
    )
  console.warn(`Skipping tests that need ${variable}: set ${wanted} to run them.`)
  return undefined
}

export const redisUrl: string | undefined = serviceUrl('REDIS_URL', ['redis://'])
export const postgresUrl: string | undefined = serviceUrl('DATABASE_URL', ['postgres://', 'postgresql://'])
