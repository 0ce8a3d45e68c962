import request from 'supertest'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { MemoryKeyStore, type SaikuOptions, type TenantRecord } from '@saiku/core'
import type { AdapterHarness, AppFixtures, ConformanceApp } from './harness.js'

const acme: TenantRecord = {
  tenantId: '00000000-0000-4000-8000-acme00000000',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'acme-warehouse',
  subscription: { status: 'active', trialEndsAt: null },
}
const REALM = 'acme-api'
const UNAUTHORIZED = { error: 'unauthorized', message: 'API key missing or invalid.' }

/**
 * The `realm` option reaches every challenge, not only the middleware's own: before,
 * a 401 a handler threw and the 401 of `requirePermission` on a request without a
 * principal always said realm="saiku".
 */
export function describeRealmConformance(harness: AdapterHarness): void {
  describe(`realm bug: the configured realm reaches every challenge (${harness.name})`, () => {
    let store: MemoryKeyStore
    let fixtures: AppFixtures
    let apps: ConformanceApp[]

    beforeEach(() => {
      store = new MemoryKeyStore({ tenants: [acme] })
      fixtures = { projects: new Map(), hits: { tenant: 0, preflight: 0 }, errors: [] }
      apps = []
    })
    afterEach(() => {
      for (const app of apps) app.authenticator.close()
    })

    function start(options: SaikuOptions): ConformanceApp {
      const app = harness.createApp(store, options, fixtures)
      apps.push(app)
      return app
    }

    const get = (app: ConformanceApp, path: string, key?: string) => {
      const req = request(app.handler).get(path)
      return key === undefined ? req : req.set('Authorization', `Bearer ${key}`)
    }

    it('challenges the configured realm on a 401 a handler threw, not "saiku"', async () => {
      const app = start({ realm: REALM })
      const { key } = await app.authenticator.keys.create(acme.tenantId, { label: 'agent' })
      const res = await get(app, '/me/reauthenticate', key)
      expect([res.status, res.body, res.headers['www-authenticate']]).toEqual([
        401,
        UNAUTHORIZED,
        `Bearer realm="${REALM}"`,
      ])
    })

    it('challenges the configured realm on the 401 of requirePermission for a request report-only authentication admitted without a principal', async () => {
      const app = start({ realm: REALM, reportOnly: { authentication: true } })
      const res = await get(app, '/me/api-keys')
      expect([res.status, res.body, res.headers['www-authenticate']]).toEqual([
        401,
        UNAUTHORIZED,
        `Bearer realm="${REALM}"`,
      ])
    })

    it('challenges the configured realm on a 401 a handler threw for a request without a principal', async () => {
      const app = start({ realm: REALM, reportOnly: { authentication: true } })
      const res = await get(app, '/me/reauthenticate', 'sk_live_not-a-key')
      expect([res.status, res.body, res.headers['www-authenticate']]).toEqual([
        401,
        UNAUTHORIZED,
        `Bearer realm="${REALM}"`,
      ])
    })

    it("challenges the principal's realm on the 403 of requirePermission", async () => {
      const app = start({ realm: REALM })
      const { key } = await app.authenticator.keys.create(acme.tenantId, {
        label: 'agent',
        permissions: ['billing:write'],
      })
      const res = await get(app, '/me/api-keys', key)
      expect(res.status).toBe(403)
      expect(res.headers['www-authenticate']).toMatch(
        new RegExp(`^Bearer realm="${REALM}", error="insufficient_scope".*, scope="keys:read"$`),
      )
    })

    it('still challenges realm="saiku" when no realm is configured', async () => {
      const app = start({ reportOnly: { authentication: true } })
      expect((await get(app, '/me/api-keys')).headers['www-authenticate']).toBe('Bearer realm="saiku"')
      expect((await get(app, '/me/reauthenticate')).headers['www-authenticate']).toBe('Bearer realm="saiku"')
    })
  })
}
