// CORS preflights through the adapter: with `preflight: 'pass'` a browser's preflight reaches the layer after the
// middleware (here OPTIONS /me/tenant, standing in for a CORS layer) unauthenticated and uncounted; anything else
// that is not exactly a browser's preflight is authenticated as any request.
import request from 'supertest'
import { describe, expect, it } from 'vitest'
import type { DecisionEvent } from '@saiku/core'
import { acme, BARE_CHALLENGE, expectJsonError, UNAUTHORIZED_BODY, useConformance } from './context.js'
import type { AdapterHarness, ConformanceApp } from './harness.js'

/** What a browser sends before a cross-origin GET with an Authorization header. */
const PREFLIGHT = {
  Origin: 'https://app.example.test',
  'Access-Control-Request-Method': 'GET',
  'Access-Control-Request-Headers': 'authorization',
}
const FIRST_COUNTED = '"minute";r=59;t=60, "hour";r=999;t=3600'

export function describePreflight(harness: AdapterHarness): void {
  describe(`adapter conformance: ${harness.name}: CORS preflights`, () => {
    const c = useConformance(harness)
    const { start, mint, get } = c

    const options = (app: ConformanceApp, path: string, headers: Record<string, string>) =>
      request(app.handler).options(path).set(headers)

    it("with preflight: 'pass', a preflight reaches the next layer, uncounted, unreported and without a challenge", async () => {
      const events: DecisionEvent[] = []
      const app = start({ preflight: 'pass', onDecision: (event) => void events.push(event) })
      const { key } = await mint(app, acme)
      for (let i = 0; i < 3; i++) {
        const res = await options(app, '/me/tenant', PREFLIGHT)
        expect(res.status).toBe(204)
        expect(res.headers['www-authenticate']).toBeUndefined()
        expect(res.headers['ratelimit']).toBeUndefined()
        expect(res.headers['ratelimit-policy']).toBeUndefined()
      }
      expect(c.fixtures.hits.preflight).toBe(3)
      // The tenant's first counted request: the three preflights took nothing from either window.
      const admitted = await get(app, '/me/tenant', key)
      expect(admitted.status).toBe(200)
      expect(admitted.headers['ratelimit']).toBe(FIRST_COUNTED)
      expect(events.map((event) => [event.method, event.status, event.reason])).toEqual([['GET', 200, 'admitted']])
    })

    it('below a mount point too', async () => {
      const app = start({ preflight: 'pass' }, { mountAt: '/api' })
      expect((await options(app, '/api/me/tenant', PREFLIGHT)).status).toBe(204)
      expect(c.fixtures.hits.preflight).toBe(1)
    })

    it('by default, the same preflight is a 401 with the bare challenge, and the next layer never runs', async () => {
      const app = start()
      const res = await options(app, '/me/tenant', PREFLIGHT)
      expectJsonError(res, 401, UNAUTHORIZED_BODY.error, UNAUTHORIZED_BODY.message)
      expect(res.headers['www-authenticate']).toBe(BARE_CHALLENGE)
      expect(c.fixtures.hits.preflight).toBe(0)
    })

    it("with preflight: 'pass', an OPTIONS without Origin or Access-Control-Request-Method is a 401", async () => {
      const app = start({ preflight: 'pass' })
      for (const headers of [{}, { Origin: PREFLIGHT.Origin }, { 'Access-Control-Request-Method': 'GET' }]) {
        const res = await options(app, '/me/tenant', headers)
        expectJsonError(res, 401, UNAUTHORIZED_BODY.error, UNAUTHORIZED_BODY.message)
        expect(res.headers['www-authenticate']).toBe(BARE_CHALLENGE)
      }
      expect(c.fixtures.hits.preflight).toBe(0)
    })

    it("with preflight: 'pass', a preflight carrying Authorization is authenticated as any request: counted, or a 401", async () => {
      const app = start({ preflight: 'pass' })
      const { key } = await mint(app, acme)
      const admitted = await options(app, '/me/tenant', { ...PREFLIGHT, Authorization: `Bearer ${key}` })
      expect(admitted.status).toBe(204)
      expect(admitted.headers['ratelimit']).toBe(FIRST_COUNTED)
      const refused = await options(app, '/me/tenant', { ...PREFLIGHT, Authorization: 'Bearer sk_live_not-a-key' })
      expectJsonError(refused, 401, 'unauthorized')
      expect(c.fixtures.hits.preflight).toBe(1)
      expect((await get(app, '/me/tenant', key)).headers['ratelimit']).toBe('"minute";r=58;t=60, "hour";r=998;t=3600')
    })
  })
}
