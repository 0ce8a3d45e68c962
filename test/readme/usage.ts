import type { Authenticator } from '@saiku/core'

/** A usage page's read: both windows, from the limiter, spending nothing. */
export async function usageLine(authenticator: Authenticator, tenantId: string): Promise<string> {
  const usage = await authenticator.usage(tenantId)
  if (usage === null) return 'no such tenant'
  const { minute, hour } = usage
  if (minute === null || hour === null) return `${usage.limits.perMinute}/min and ${usage.limits.perHour}/h (this backend cannot be read without counting)`
  return `${minute.used} of ${minute.quota} this minute (resets in ${minute.resetSeconds} s), ${hour.used} of ${hour.quota} this hour`
}
