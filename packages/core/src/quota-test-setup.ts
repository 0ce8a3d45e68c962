// What the quota tests of the authenticator share (quotas.test.ts, quota-backends.test.ts): one tenant,
// small quotas, and an authenticator that records its decisions and errors. Never exported by a package.
import { createAuthenticator, type Authenticator } from './authenticator.js'
import type { DecisionEvent } from './decision.js'
import type { SaikuOptions } from './options.js'
import type { AuthDecision } from './decision.js'
import { MemoryKeyStore, type TenantRecord } from './store.js'
import { resolveTierTable, type WindowLimits } from './tiers.js'

export const acme = (billingAnchor?: Date, tier = 'metered'): TenantRecord => ({
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier,
  connectionName: 'w',
  subscription: { status: 'active', ...(billingAnchor === undefined ? {} : { billingAnchor }) },
})

export const request = (key: string): { headers: Record<string, string>; method: string; url: string; ip: string } => ({
  headers: { authorization: `Bearer ${key}` },
  method: 'GET',
  url: '/me/tenant',
  ip: '127.0.0.1',
})

// Validated in order (each quota at least the window before it), so small quotas mean small windows.
export const tiers: Readonly<Record<'metered' | 'daily' | 'bigger', WindowLimits>> = {
  metered: { perMinute: 3, perHour: 3, perDay: 3, perMonth: 3 },
  daily: { perMinute: 2, perHour: 2, perDay: 2 },
  bigger: { perMinute: 5, perHour: 5, perDay: 5, perMonth: 5 },
}

export interface QuotaSetUp {
  readonly store: MemoryKeyStore
  readonly auth: Authenticator
  readonly key: string
  readonly send: () => Promise<AuthDecision>
  readonly events: DecisionEvent[]
  readonly errors: Error[]
}

export async function setUp(tenant: TenantRecord, options: SaikuOptions = {}): Promise<QuotaSetUp> {
  const store = new MemoryKeyStore({ tenants: [tenant], tiers: resolveTierTable(options.tiers ?? tiers) })
  const events: DecisionEvent[] = []
  const errors: Error[] = []
  const auth = createAuthenticator(store, {
    tiers,
    failedAuth: false,
    onDecision: (event) => events.push(event),
    onError: (error) => errors.push(error),
    ...options,
  })
  const { key } = await auth.keys.create('t-acme', { label: 'agent' })
  const send = () => auth.authenticate(request(key))
  return { store, auth, key, send, events, errors }
}
