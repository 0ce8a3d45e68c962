// The client address the adapter hands in (the socket, or X-Forwarded-For behind a trusted proxy only),
// as the failed-authentication budget sees it.
import { describe, expect, it, vi } from 'vitest'
import { mintApiKey } from '@saiku/core'
import { acme, expectJsonError, globex, T0, useConformance } from './context.js'
import type { AdapterHarness, ConformanceApp } from './harness.js'

export function describeClientAddresses(harness: AdapterHarness): void {
  describe(`adapter conformance: ${harness.name}: client addresses`, () => {
    const c = useConformance(harness)
    const { start, mint, get } = c

    const from = (app: ConformanceApp, key: string, forwardedFor?: string) => {
      const req = get(app, '/me/tenant', key)
      return forwardedFor === undefined ? req : req.set('X-Forwarded-For', forwardedFor)
    }

    it('answers repeated failures from one address with 429, past its allowance without a store lookup, and without touching any tenant', async () => {
      const app = start({ failedAuth: { perMinute: 5, lookupsOverBudgetPerMinute: 1 } })
      const { key } = await mint(app, acme)
      expect((await get(app, '/me/tenant', key)).headers['ratelimit']).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
      for (let i = 0; i < 5; i++) expect((await from(app, mintApiKey().key)).status).toBe(401)
      // Over budget, the allowance's one lookup a minute: it fails too.
      expect((await from(app, mintApiKey().key)).status).toBe(429)
      const findKey = vi.spyOn(c.store, 'findKey')
      const blocked = await from(app, mintApiKey().key)
      expectJsonError(
        blocked,
        429,
        'rate_limited',
        'Too many failed authentication attempts from this address. Retry in 60 s.',
      )
      expect(blocked.headers['retry-after']).toBe('60')
      expect(blocked.headers['ratelimit']).toBeUndefined()
      expectJsonError(await get(app, '/me/tenant', 'garbage'), 429, 'rate_limited')
      expect(findKey).not.toHaveBeenCalled()
      // The tenant's own key, already verified here, still works, and its count moved by one only.
      const own = await get(app, '/me/tenant', key)
      expect(own.status).toBe(200)
      expect(own.headers['ratelimit']).toBe('"minute";r=58;t=60, "hour";r=998;t=3600')
      c.clock.set(T0 + 60_000)
      expect((await from(app, mintApiKey().key)).status).toBe(401)
    })

    it('gives a spoofed X-Forwarded-For no fresh budget when proxies are not trusted', async () => {
      const app = start({ failedAuth: { perMinute: 3 } })
      for (let i = 0; i < 3; i++) expect((await from(app, mintApiKey().key, `198.51.100.${i}`)).status).toBe(401)
      expect((await from(app, mintApiKey().key, '198.51.100.99')).status).toBe(429)
    })

    it('counts clients apart behind a trusted proxy, so one client cannot lock out another', async () => {
      const app = start({ failedAuth: { perMinute: 3 } }, { trustProxy: true })
      for (let i = 0; i < 4; i++) await from(app, mintApiKey().key, '198.51.100.7')
      expect((await from(app, mintApiKey().key, '198.51.100.7')).status).toBe(429)
      // Another client, with a valid key this process has never seen: verified as usual.
      const { key } = await mint(app, globex)
      expect((await from(app, key, '198.51.100.8')).status).toBe(200)
      expect((await from(app, mintApiKey().key, '198.51.100.8')).status).toBe(401)
    })

    it('refuses a key from an address its allowlist leaves out with a 403 that spends no rate-limit or failure budget', async () => {
      const app = start({ failedAuth: { perMinute: 2 } })
      // An address this harness never connects from.
      const elsewhere = await app.authenticator.keys.create(acme.tenantId, {
        label: 'office',
        allowedAddresses: ['198.51.100.0/24'],
      })
      for (let i = 0; i < 4; i++) {
        const refused = await get(app, '/me/tenant', elsewhere.key)
        expectJsonError(refused, 403, 'forbidden', 'This API key cannot be used from this address.')
        expect(refused.headers['ratelimit']).toBeUndefined()
        expect(refused.headers['retry-after']).toBeUndefined()
      }
      expect(c.fixtures.hits.tenant).toBe(0)
      // The loopback the harness connects from (IPv4, or IPv4-mapped IPv6): admitted, the first request counted.
      const local = await app.authenticator.keys.create(acme.tenantId, {
        label: 'local',
        allowedAddresses: ['127.0.0.1'],
      })
      const admitted = await get(app, '/me/tenant', local.key)
      expect(admitted.status).toBe(200)
      expect(admitted.headers['ratelimit']).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
    })

    it('matches an allowlist against the client address behind a trusted proxy', async () => {
      const app = start({}, { trustProxy: true })
      const { key } = await app.authenticator.keys.create(acme.tenantId, {
        label: 'office',
        allowedAddresses: ['198.51.100.0/24', '2001:db8::1'],
      })
      expect((await from(app, key, '198.51.100.7')).status).toBe(200)
      expectJsonError(await from(app, key, '203.0.113.7'), 403, 'forbidden')
      // The full IPv6 address, never the /64 the failure budget groups it in.
      expect((await from(app, key, '2001:db8::1')).status).toBe(200)
      expectJsonError(await from(app, key, '2001:db8::2'), 403, 'forbidden')
      const counted = await from(app, key, '198.51.100.8')
      expect(counted.headers['ratelimit']).toBe('"minute";r=57;t=60, "hour";r=997;t=3600')
    })

    it('counts IPv4 hosts seen through NAT64 or an IPv4-compatible address each as its IPv4 address, not as one /64', async () => {
      const app = start({ failedAuth: { perMinute: 3 } }, { trustProxy: true })
      // 198.51.100.7 through NAT64's well-known prefix spends its budget...
      for (let i = 0; i < 3; i++) expect((await from(app, mintApiKey().key, '64:ff9b::c633:6407')).status).toBe(401)
      expect((await from(app, mintApiKey().key, '64:ff9b::198.51.100.7')).status).toBe(429)
      // ...and is the same client over IPv4 and in the other forms that embed its address.
      for (const same of ['198.51.100.7', '::ffff:198.51.100.7', '::198.51.100.7'])
        expect((await from(app, mintApiKey().key, same)).status, same).toBe(429)
      // Its neighbours, in the same /64 of IPv6, are other hosts with their own budgets.
      for (const neighbour of ['64:ff9b::198.51.100.8', '::198.51.100.9'])
        expect((await from(app, mintApiKey().key, neighbour)).status, neighbour).toBe(401)
    })
  })
}
