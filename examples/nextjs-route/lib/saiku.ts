import { createKeyManager, type CreatedApiKey } from '@saiku/core'
import { MemoryKeyStore, saikuAuth, type SaikuFetchAuth } from '@saiku/fetch'

const DEMO_TENANT_ID = '81e301f2-5d0c-4c4e-9a57-3f0e7f1d2c10'

interface Demo {
  readonly store: MemoryKeyStore
  readonly auth: SaikuFetchAuth
  /** The demo key, minted once per server process. */
  readonly key: Promise<CreatedApiKey>
}

/** A demo tenant on a 14-day trial of the starter plan, with one key that may list keys. */
async function seedDemoTenant(store: MemoryKeyStore): Promise<CreatedApiKey> {
  store.putTenant({
    tenantId: DEMO_TENANT_ID,
    tenantSlug: 'acme',
    tier: 'starter',
    connectionName: 'production-warehouse',
    subscription: { status: 'trialing', trialEndsAt: new Date(Date.now() + 14 * 86_400_000) },
  })
  return createKeyManager(store).create(DEMO_TENANT_ID, { label: 'production-agent', permissions: ['keys:read'] })
}

// One store and one saikuAuth per server process, whichever bundle asks first: Next.js bundles the route
// handlers and instrumentation.ts apart, and a module-level store would be one per bundle.
const shared = globalThis as typeof globalThis & { saikuDemo?: Demo }

export function demo(): Demo {
  if (shared.saikuDemo === undefined) {
    const store = new MemoryKeyStore()
    shared.saikuDemo = {
      store,
      // A route handler is given no peer address: behind a proxy of yours, name the header it sets
      // (clientAddressHeader: 'x-forwarded-for'), so each client has its own failed-authentication budget.
      auth: saikuAuth(store, { subscription: { exemptPaths: ['/me/billing'] } }),
      key: seedDemoTenant(store),
    }
  }
  return shared.saikuDemo
}
