import { describe, expect, it } from 'vitest'
import { MemoryKeyStore } from '@saiku/core'
import { createHandler } from '../src/app.ts'
import { seedDemoTenant } from '../src/demo.ts'

// The handler as every runtime calls it: a Request in, a Response out, and what the host knows beside it.
async function demo() {
  const store = new MemoryKeyStore()
  const { key } = await seedDemoTenant(store)
  const handler = createHandler<{ address: string }>(store, (_request, info) => info.address)
  const call = (path: string, headers: Record<string, string> = {}) =>
    handler(new Request(`http://127.0.0.1${path}`, { headers }), { address: '127.0.0.1' })
  return { key, call }
}

describe('example fetch-basic', () => {
  it('serves the tenant with both RateLimit fields to the demo key', async () => {
    const { key, call } = await demo()
    const response = await call('/me/tenant', { authorization: `Bearer ${key}` })
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual({
      tenantId: '81e301f2-5d0c-4c4e-9a57-3f0e7f1d2c10',
      tenantSlug: 'acme',
      tier: 'starter',
      connectionName: 'production-warehouse',
    })
    expect(response.headers.get('ratelimit-policy')).toBe('"minute";q=60;w=60, "hour";q=1000;w=3600')
    expect(response.headers.get('ratelimit')).toMatch(/^"minute";r=59;t=\d+, "hour";r=999;t=\d+$/)
  })

  it('answers no key with the JSON 401 and an unknown path with the JSON 404', async () => {
    const { key, call } = await demo()
    const missing = await call('/me/tenant')
    expect(missing.status).toBe(401)
    expect(missing.headers.get('www-authenticate')).toBe('Bearer realm="saiku"')
    expect(await missing.json()).toEqual({ error: 'unauthorized', message: 'API key missing or invalid.' })
    const unknown = await call('/me/nowhere', { authorization: `Bearer ${key}` })
    expect(unknown.status).toBe(404)
    expect(((await unknown.json()) as { error: string }).error).toBe('not_found')
  })
})
