import { describe, expect, it } from 'vitest'
import { GET } from '../app/me/tenant/route'
import { demo } from '../lib/saiku'

// The route handler as Next.js calls it: a Request in, a Response out.
describe('example nextjs-route', () => {
  it('answers GET /me/tenant: the tenant to the demo key, the JSON 401 without one', async () => {
    const { key } = await demo().key
    const admitted = await GET(
      new Request('http://127.0.0.1/me/tenant', { headers: { authorization: `Bearer ${key}` } }),
      {},
    )
    expect(admitted.status).toBe(200)
    expect(((await admitted.json()) as { tenantSlug: string }).tenantSlug).toBe('acme')
    expect(admitted.headers.get('ratelimit-policy')).toBe('"minute";q=60;w=60, "hour";q=1000;w=3600')
    const refused = await GET(new Request('http://127.0.0.1/me/tenant'), {})
    expect(refused.status).toBe(401)
    expect(await refused.json()).toEqual({ error: 'unauthorized', message: 'API key missing or invalid.' })
  })
})
