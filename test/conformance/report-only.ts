// Report-only mode through the adapter: nothing refused, req.saiku / ctx.state.saiku and saikuUnverified
// set for the app, a route that needs a principal still refusing.
import request from 'supertest'
import { describe, expect, it } from 'vitest'
import { mintApiKey, type DecisionEvent, type SaikuOptions } from '@saiku/core'
import { enterprise, expectJsonError, T0, tiny, useConformance } from './context.js'
import type { AdapterHarness, ConformanceApp } from './harness.js'

export function describeReportOnly(harness: AdapterHarness): void {
  describe(`adapter conformance: ${harness.name}: report-only roll-out`, () => {
    const c = useConformance(harness)
    const { start, mint, get } = c

    interface Seen {
      status: number
      body: unknown
      rateLimit: string | undefined
      retryAfter: string | undefined
    }

    /** The same traffic for every run: a tiny tenant past both windows, an enterprise one, and credentials that fail. */
    async function replay(app: ConformanceApp, keys: { tiny: string; enterprise: string }): Promise<Seen[]> {
      c.clock.set(T0)
      const seen: Seen[] = []
      const send = async (authorization?: string) => {
        const req = request(app.handler).get('/me/whoami')
        const res = await (authorization === undefined ? req : req.set('Authorization', authorization))
        seen.push({
          status: res.status,
          body: res.body,
          rateLimit: res.headers['ratelimit'],
          retryAfter: res.headers['retry-after'],
        })
      }
      for (let i = 0; i < 5; i++) await send(`Bearer ${keys.tiny}`)
      c.clock.set(T0 + 61_000)
      for (let i = 0; i < 3; i++) await send(`Bearer ${keys.tiny}`)
      for (let i = 0; i < 2; i++) await send(`Bearer ${keys.enterprise}`)
      await send()
      await send(`Bearer ${mintApiKey().key}`)
      await send('Bearer garbage')
      await send(`Bearer ${keys.tiny}, Bearer ${keys.enterprise}`)
      return seen
    }

    it('refuses nothing, and reports the same decisions and counts as an enforcing run over the same traffic', async () => {
      const enforcingEvents: DecisionEvent[] = []
      const reportedEvents: DecisionEvent[] = []
      const enforcing = start({ onDecision: (event) => enforcingEvents.push(event) })
      const reporting = start({
        reportOnly: { limits: true, authentication: true },
        onDecision: (event) => reportedEvents.push(event),
      })
      const keys = { tiny: (await mint(enforcing, tiny)).key, enterprise: (await mint(enforcing, enterprise)).key }

      const enforced = await replay(enforcing, keys)
      const reported = await replay(reporting, keys)

      expect(enforced.map((seen) => seen.status)).toEqual([
        200, 200, 200, 429, 429, 200, 200, 429, 200, 200, 401, 401, 401, 400,
      ])
      expect(reported.map((seen) => seen.status)).toEqual(reported.map(() => 200))
      // The same decisions, told as what would have happened; only refusals that were not applied say so.
      const strip = ({ enforced: _, ...event }: DecisionEvent) => event
      expect(reportedEvents.map(strip)).toEqual(enforcingEvents.map(strip))
      expect(enforcingEvents.every((event) => event.enforced)).toBe(true)
      expect(reportedEvents.map((event) => event.enforced)).toEqual(
        enforcingEvents.map((event) => event.status === 200),
      )
      expect(reportedEvents.filter((event) => !event.enforced).map((event) => [event.status, event.reason])).toEqual([
        [429, 'rate_limited'],
        [429, 'rate_limited'],
        [429, 'rate_limited'],
        [401, 'missing_credentials'],
        [401, 'unknown_key'],
        [401, 'malformed'],
        [400, 'ambiguous_credentials'],
      ])
      // Counted as usual: the same RateLimit fields on every request, and the same usage after.
      expect(reported.map((seen) => seen.rateLimit)).toEqual(enforced.map((seen) => seen.rateLimit))
      expect(reported.filter((seen) => seen.rateLimit !== undefined)).toHaveLength(10)
      expect(reported.every((seen) => seen.retryAfter === undefined)).toBe(true)
      expect(await reporting.authenticator.usage(tiny.tenantId)).toEqual(
        await enforcing.authenticator.usage(tiny.tenantId),
      )
      expect((await reporting.authenticator.usage(tiny.tenantId))?.hour).toMatchObject({ used: 5, remaining: 0 })

      // The app tells each kind apart: a principal over its limit, and a request without one.
      expect(reported[3]!.body).toEqual({ tenantId: tiny.tenantId, overLimit: true, unverified: null })
      expect(reported[0]!.body).toEqual({ tenantId: tiny.tenantId, overLimit: false, unverified: null })
      expect(reported[10]!.body).toEqual({
        tenantId: null,
        overLimit: false,
        unverified: { status: 401, code: 'unauthorized', reason: 'missing_credentials' },
      })
      expect(reported[13]!.body).toEqual({
        tenantId: null,
        overLimit: false,
        unverified: { status: 400, code: 'invalid_request', reason: 'ambiguous_credentials' },
      })
    })

    it('refuses no cost either, a cost above a window included, and sends the rate-limit fields an enforcing run sends', async () => {
      const costOf: SaikuOptions['cost'] = ({ request: req }) => Number(req.headers['x-cost'] ?? 1)
      const fields = (headers: Record<string, string>) =>
        Object.fromEntries(Object.entries(headers).filter(([name]) => /ratelimit/.test(name)))
      /** On tiny (3 a minute, 5 an hour): one cost per request, the clock moved a minute on before the fourth. */
      const costs = [3, 4, 1, 3, 2, 0, 6]
      async function run(app: ConformanceApp, key: string) {
        c.clock.set(T0)
        const seen: {
          status: number
          body: unknown
          fields: Record<string, string>
          retryAfter: string | undefined
        }[] = []
        for (const [i, cost] of costs.entries()) {
          if (i === 3) c.clock.set(T0 + 61_000)
          const res = await request(app.handler)
            .get('/me/whoami')
            .set('Authorization', `Bearer ${key}`)
            .set('x-cost', String(cost))
          seen.push({
            status: res.status,
            body: res.body,
            fields: fields(res.headers),
            retryAfter: res.headers['retry-after'],
          })
        }
        return seen
      }
      for (const rateLimitHeaders of ['draft-11', 'legacy'] as const) {
        const enforcingEvents: DecisionEvent[] = []
        const reportedEvents: DecisionEvent[] = []
        const enforcing = start({ cost: costOf, rateLimitHeaders, onDecision: (e) => enforcingEvents.push(e) })
        const reporting = start({
          cost: costOf,
          rateLimitHeaders,
          reportOnly: { limits: true },
          onDecision: (e) => reportedEvents.push(e),
        })
        const { key } = await mint(enforcing, tiny)

        const enforced = await run(enforcing, key)
        const reported = await run(reporting, key)

        expect(
          enforced.map((seen) => seen.status),
          rateLimitHeaders,
        ).toEqual([200, 429, 429, 429, 200, 200, 429])
        expect(
          reported.map((seen) => seen.status),
          rateLimitHeaders,
        ).toEqual(costs.map(() => 200))
        expect(reported.every((seen) => seen.retryAfter === undefined)).toBe(true)
        // Field for field what enforcing said; the hour binds the cost-3 request after the minute (Retry-After 3539).
        expect(reported.map((seen) => seen.fields)).toEqual(enforced.map((seen) => seen.fields))
        expect(enforced[3]!.retryAfter).toBe('3539')
        if (rateLimitHeaders === 'legacy') expect(reported[3]!.fields['x-ratelimit-reset']).toBe('3539')
        else expect(reported[3]!.fields['ratelimit']).toBe('"minute";r=3;t=60, "hour";r=2;t=3539')
        // A cost no window holds: no rate-limit fields, as on the enforcing 429, and nothing counted.
        expect(reported[1]!.fields).toEqual({})
        expect(reported[6]!.fields).toEqual({})
        expect(reported.map((seen) => (seen.body as { overLimit: boolean }).overLimit)).toEqual([
          false,
          true,
          true,
          true,
          false,
          false,
          true,
        ])

        const strip = ({ enforced: _, ...event }: DecisionEvent) => event
        expect(reportedEvents.map(strip)).toEqual(enforcingEvents.map(strip))
        expect(reportedEvents.filter((e) => !e.enforced).map((e) => [e.status, e.code, e.reason])).toEqual([
          [429, 'rate_limited', 'cost_exceeds_limit'],
          [429, 'rate_limited', 'rate_limited'],
          [429, 'rate_limited', 'rate_limited'],
          [429, 'rate_limited', 'cost_exceeds_limit'],
        ])
        expect(await reporting.authenticator.usage(tiny.tenantId)).toEqual(
          await enforcing.authenticator.usage(tiny.tenantId),
        )
      }
    })

    it('applies to the tiers and tenants chosen only, and a route that needs a principal still refuses an unverified request', async () => {
      for (const limits of [{ tiers: ['tiny'] }, { tenants: [tiny.tenantId] }]) {
        const app = start({ reportOnly: { limits } })
        const tinyKey = (await mint(app, tiny, ['keys:read'])).key
        const enterpriseKey = (await mint(app, enterprise)).key
        c.clock.set(T0)
        for (let i = 0; i < 4; i++) expect((await get(app, '/me/whoami', tinyKey)).status).toBe(200)
        for (let i = 0; i < 5; i++) expect((await get(app, '/me/whoami', enterpriseKey)).status).toBe(200)
        expectJsonError(await get(app, '/me/whoami', enterpriseKey), 429, 'rate_limited')
        expectJsonError(await get(app, '/me/whoami'), 401, 'unauthorized')
      }
      const app = start({ reportOnly: { authentication: true } })
      expect((await get(app, '/me/whoami', 'sk_live_nonsense')).status).toBe(200)
      expectJsonError(await get(app, '/me/api-keys', 'sk_live_nonsense'), 401, 'unauthorized')
    })

    it('counts a failing request it lets through once when the middleware is mounted twice', async () => {
      const events: DecisionEvent[] = []
      const app = start(
        {
          reportOnly: { authentication: true },
          failedAuth: { perMinute: 2 },
          onDecision: (event) => events.push(event),
        },
        { mountTwice: true },
      )
      for (let i = 0; i < 2; i++) expect((await get(app, '/me/whoami', mintApiKey().key)).status).toBe(200)
      // Two requests, two failures: within the budget of two, so neither would have been a 429.
      expect(events.map((event) => [event.status, event.enforced])).toEqual([
        [401, false],
        [401, false],
      ])
    })

    it('leaves the RateLimit fields off under report-only limits when told to', async () => {
      const app = start({ reportOnly: { limits: { tiers: ['tiny'] }, rateLimitHeaders: false } })
      const tinyKey = (await mint(app, tiny)).key
      const enterpriseKey = (await mint(app, enterprise)).key
      for (let i = 0; i < 4; i++) {
        const res = await get(app, '/me/whoami', tinyKey)
        expect([res.status, res.headers['ratelimit'], res.headers['ratelimit-policy']]).toEqual([
          200,
          undefined,
          undefined,
        ])
      }
      expect((await get(app, '/me/whoami', enterpriseKey)).headers['ratelimit']).toBe(
        '"minute";r=4;t=60, "hour";r=99;t=3600',
      )
    })
  })
}
