// The README's Bun, Deno and Next.js snippets, run as those hosts call them: the request, and what the host
// passes beside it (Bun's server, Deno's connection info, Next.js's route context).
import { describe, expect, it } from 'vitest'
import { createKeyManager, type MemoryKeyStore as Store, type SaikuPrincipal } from '@saiku/core'
import bun, { store as bunStore } from './readme/bun.js'
import deno, { store as denoStore } from './readme/deno.js'
import { GET, listKeys, store as nextStore } from './readme/next-route.js'
import { answer } from './readme/any-host.js'
import { MemoryKeyStore, saikuAuth } from './index.js'

const acme = {
  tenantId: '00000000-0000-4000-8000-acme00000000',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'acme-warehouse',
  subscription: { status: 'active', trialEndsAt: null },
} as const

async function seed(store: Store, permissions: string[] = []): Promise<string> {
  store.putTenant(acme)
  return (await createKeyManager(store).create(acme.tenantId, { label: 'agent', permissions })).key
}

const get = (key: string, headers: Record<string, string> = {}) =>
  new Request('http://127.0.0.1/me/tenant', { headers: { authorization: `Bearer ${key}`, ...headers } })

describe('README snippets of @saiku/fetch', () => {
  it('Bun: answers with the tenant and the fields, the address from server.requestIP', async () => {
    const key = await seed(bunStore)
    const asked: Request[] = []
    const server = { requestIP: (request: Request) => (asked.push(request), { address: '192.0.2.1' }) }
    const res = await bun.fetch(get(key), server)
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ tenantSlug: 'acme' })
    expect(res.headers.get('ratelimit')).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
    expect((await bun.fetch(get('sk_live_nope'), server)).status).toBe(401)
    expect(asked.length).toBeGreaterThan(0)
  })

  it('Deno: answers with the tenant and the fields, the address from info.remoteAddr', async () => {
    const key = await seed(denoStore)
    const res = await deno.fetch(get(key), { remoteAddr: { hostname: '192.0.2.1' } })
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ tenantSlug: 'acme' })
    expect(res.headers.get('ratelimit-policy')).toBe('"minute";q=60;w=60, "hour";q=1000;w=3600')
  })

  it('Next.js: route handlers share one authenticator, and requirePermission refuses with its Response', async () => {
    const key = await seed(nextStore)
    const context = { params: Promise.resolve({}) }
    const first = await GET(get(key, { 'x-forwarded-for': '192.0.2.1' }), context)
    expect(first.status).toBe(200)
    expect(first.headers.get('ratelimit')).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
    // Another route, the same tenant's count.
    const keys = await listKeys(get(key, { 'x-forwarded-for': '192.0.2.1' }), context)
    expect(keys.status).toBe(403)
    expect(keys.headers.get('ratelimit')).toBe('"minute";r=58;t=60, "hour";r=998;t=3600')
    const reader = await seed(nextStore, ['keys:read'])
    const listed = await listKeys(get(reader, { 'x-forwarded-for': '192.0.2.1' }), context)
    expect(listed.status).toBe(200)
    expect(((await listed.json()) as { keys: unknown[] }).keys).toHaveLength(2)
  })

  it('any host: the refusal as it is, or the handler response with the fields', async () => {
    const store = new MemoryKeyStore()
    const key = await seed(store)
    const auth = saikuAuth(store)
    const handle = (_request: Request, principal: SaikuPrincipal | null) =>
      Promise.resolve(Response.json(principal!.tenant))
    const res = await answer(auth, get(key), '192.0.2.1', handle)
    expect(res.status).toBe(200)
    expect(res.headers.get('ratelimit')).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
    const refused = await answer(auth, get('sk_live_nope'), '192.0.2.1', handle)
    expect(refused.status).toBe(401)
    expect(((await refused.json()) as { error: string }).error).toBe('unauthorized')
    auth.authenticator.close()
  })
})
