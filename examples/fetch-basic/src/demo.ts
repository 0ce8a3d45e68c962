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

/** The port to listen on: PORT, default 3000 (0 picks a free one). */
export const demoPort = (env: Record<string, string | undefined>): number => Number(env.PORT ?? 3000)

/** Prints where the server listens, the demo key (shown once) and a curl line. */
export function printDemo(runtime: string, port: number, key: string): void {
  const url = `http://127.0.0.1:${port}`
  console.log(`Saiku auth example (Fetch handler on ${runtime}) on ${url}`)
  console.log(`Demo key for tenant "acme" (shown once): ${key}`)
  console.log(`Try: curl ${url}/me/tenant -H "Authorization: Bearer ${key}"`)
}
