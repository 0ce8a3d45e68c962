import Koa from 'koa'
import { createKeyManager, MemoryKeyStore, type KeyStore } from '@saiku/core'
import { saikuAuth, saikuErrors } from '@saiku/koa'

/** Every request needs an API key; `GET /me/tenant` says which tenant it belongs to. */
export function createApp(store: KeyStore): Koa {
  const app = new Koa()
  app.use(saikuErrors()) // first: errors and unknown routes answered as JSON
  app.use(saikuAuth(store)) // 401 without a valid key, 429 over the tier's limits
  app.use((ctx, next) => {
    if (ctx.method !== 'GET' || ctx.path !== '/me/tenant') return next()
    const { tenantId, tenantSlug, tier, connectionName } = ctx.state.saiku!.tenant
    ctx.body = { tenantId, tenantSlug, tier, connectionName }
  })
  return app
}

export const DEMO_TENANT_ID = '81e301f2-5d0c-4c4e-9a57-3f0e7f1d2c10'

/** An in-process store holding one tenant on the starter tier, and a new key for it: the store keeps only its hash. */
export async function demoStore(): Promise<{ store: MemoryKeyStore; key: string }> {
  const store = new MemoryKeyStore({
    tenants: [
      {
        tenantId: DEMO_TENANT_ID,
        tenantSlug: 'acme',
        tier: 'starter',
        connectionName: 'production-warehouse',
        subscription: { status: 'active' },
      },
    ],
  })
  const { key } = await createKeyManager(store).create(DEMO_TENANT_ID, { label: 'demo' })
  return { store, key }
}
