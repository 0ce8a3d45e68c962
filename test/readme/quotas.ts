import { createAuthenticator, MemoryKeyStore, type Authenticator } from '@saiku/core'

/** Plans that sell a month: day and month quotas over the minute and hour windows. */
export const tiers = {
  team: { perMinute: 300, perHour: 10_000, perDay: 50_000, perMonth: 1_000_000 },
  // A tier of your own: each quota at least the window before it.
  hobby: { perMinute: 10, perHour: 600, perMonth: 1_000 },
}

export function meteredAuthenticator(store: MemoryKeyStore): Authenticator {
  return createAuthenticator(store, { tiers })
}

/** The tenant's billing anchor starts its month: here on the 31st, so February's period starts on its last day. */
export const acme = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'hobby',
  connectionName: 'production-warehouse',
  subscription: { status: 'active' as const, billingAnchor: new Date('2026-01-31T10:00:00Z') },
}
