import { createServer, type RequestListener } from 'node:http'
import { createKeyManager, type CreatedApiKey, type MemoryKeyStore } from '@saiku/core'

const DEMO_TENANT_ID = '81e301f2-5d0c-4c4e-9a57-3f0e7f1d2c10'

/** A demo tenant on a 14-day trial of the starter plan, with one key that may list keys. */
export async function seedDemoTenant(store: MemoryKeyStore): Promise<CreatedApiKey> {
  store.putTenant({
    tenantId: DEMO_TENANT_ID,
    tenantSlug: 'acme',
    tier: 'starter',
    connectionName: 'production-warehouse',
    subscription: { status: 'trialing', trialEndsAt: new Date(Date.now() + 14 * 86_400_000) },
  })
  return createKeyManager(store).create(DEMO_TENANT_ID, { label: 'production-agent', permissions: ['keys:read'] })
}

/** Seeds the demo tenant, listens on PORT (default 3000) and prints the key with a curl line. */
export async function serveDemo(framework: string, store: MemoryKeyStore, listener: RequestListener): Promise<void> {
  const { key } = await seedDemoTenant(store)
  const server = createServer(listener)
  server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
    const address = server.address()
    const url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : ''}`
    console.log(`Saiku auth example (${framework}) on ${url}`)
    console.log(`Demo key for tenant "acme" (shown once): ${key}`)
    console.log(`Try: curl ${url}/me/tenant -H "Authorization: Bearer ${key}"`)
  })
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => server.close(() => process.exit(0)))
}
