// Every user hook may be synchronous or async, and may throw or reject: the answer is the one it would have been
// (or, for a hook the decision needs, the JSON 500 of a throw), `onError` hears of it, and nothing ends the process.
import { randomUUID } from 'node:crypto'
import { rawGet } from '@saiku/test-support/http'
import { afterEach, beforeEach, describe, expect, it, vi, type MockInstance } from 'vitest'
import type { DecisionEvent } from '@saiku/core'
import { acme, expectJsonError, UNAUTHORIZED_BODY, unpaid, useConformance } from './context.js'
import type { AdapterHarness } from './harness.js'

/** The two ways a hook fails: an async function that rejects, and a function that throws. */
const FAILURES = [
  {
    kind: 'an async hook that rejects',
    raise: async (error: Error): Promise<never> => {
      await Promise.resolve()
      throw error
    },
  },
  {
    kind: 'a hook that throws',
    raise: (error: Error): never => {
      throw error
    },
  },
] as const

const INTERNAL_ERROR_MESSAGE = 'An unexpected error occurred.'
/** How long a rejected hook may take to be heard on a loaded machine: a bound, never a measure. */
const SETTLED = { timeout: 10_000 }

export function describeHooks(harness: AdapterHarness): void {
  describe(`adapter conformance: ${harness.name}: hooks that throw or reject`, () => {
    const c = useConformance(harness)
    const { start, mint, get } = c
    let warnings: MockInstance<typeof process.emitWarning>
    beforeEach(() => {
      warnings = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
    })
    afterEach(() => warnings.mockRestore())

    /** The SAIKU_HOOK_FAILED warnings whose message holds `id`. */
    const hookWarnings = (id: string): string[] =>
      warnings.mock.calls
        .filter(
          ([message, options]) =>
            (options as { code?: string } | undefined)?.code === 'SAIKU_HOOK_FAILED' && String(message).includes(id),
        )
        .map(([message]) => String(message))

    for (const { kind, raise } of FAILURES) {
      it(`onDecision as ${kind}: the decisions stand, and onError receives what it failed with`, async () => {
        const audit = new Error(`audit sink down ${randomUUID()}`)
        const errors: Error[] = []
        const app = start({ onDecision: () => raise(audit), onError: (error) => void errors.push(error) })
        const { key } = await mint(app, acme)
        const refused = await get(app, '/me/tenant', 'sk_live_garbage')
        expectJsonError(refused, 401, 'unauthorized', UNAUTHORIZED_BODY.message)
        const admitted = await get(app, '/me/tenant', key)
        expect(admitted.status).toBe(200)
        expect(admitted.body.tenantSlug).toBe('acme')
        expect(admitted.headers['ratelimit']).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
        await vi.waitFor(() => expect(errors).toEqual([audit, audit]), SETTLED)
        expect(c.fixtures.hits.tenant).toBe(1)
      })

      it(`onError as ${kind}: one warning per distinct message, and every request still answered`, async () => {
        const id = randomUUID()
        const app = start({
          onDecision: (event) => raise(new Error(`audit down for a ${event.status}`)),
          onError: (error) => raise(new Error(`log sink down ${id}: ${error.message}`)),
        })
        const { key } = await mint(app, acme)
        for (let i = 0; i < 3; i++) expectJsonError(await get(app, '/me/tenant', 'garbage'), 401, 'unauthorized')
        for (let i = 0; i < 2; i++) expect((await get(app, '/me/tenant', key)).status).toBe(200)
        await vi.waitFor(() => expect(hookWarnings(id)).toHaveLength(2), SETTLED)
        expect(hookWarnings(id).sort()).toEqual([
          `Saiku auth: the onError hook threw or rejected, and was ignored: Error: log sink down ${id}: audit down for a 200`,
          `Saiku auth: the onError hook threw or rejected, and was ignored: Error: log sink down ${id}: audit down for a 401`,
        ])
        // A store failure reported to the same failing onError, and the 503's decision: each said once.
        const uncached = [(await mint(app, acme)).key, (await mint(app, acme)).key]
        vi.spyOn(c.store, 'findKey').mockRejectedValue(new Error('connection refused'))
        for (const fresh of uncached) expectJsonError(await get(app, '/me/tenant', fresh), 503, 'service_unavailable')
        await vi.waitFor(() => expect(hookWarnings(id)).toHaveLength(4), SETTLED)
        expect(hookWarnings(id).slice(2).sort()).toEqual([
          `Saiku auth: the onError hook threw or rejected, and was ignored: Error: log sink down ${id}: audit down for a 503`,
          `Saiku auth: the onError hook threw or rejected, and was ignored: Error: log sink down ${id}: key store findKey failed`,
        ])
      })

      it(`cost as ${kind}: a JSON 500 that counts nothing, reported to onError and onDecision`, async () => {
        const bug = new Error(`pricing bug ${randomUUID()}`)
        const errors: Error[] = []
        const events: DecisionEvent[] = []
        const app = start({
          cost: ({ path }) => (path === '/me/tenant' ? raise(bug) : 1),
          onError: (error) => void errors.push(error),
          onDecision: (event) => void events.push(event),
        })
        const { key, keyId } = await mint(app, acme)
        const res = await get(app, '/me/tenant', key)
        expectJsonError(res, 500, 'internal_error', INTERNAL_ERROR_MESSAGE)
        expect(res.text).not.toContain('pricing bug')
        expect(c.fixtures.hits.tenant).toBe(0)
        expect(errors).toEqual([bug])
        expect(events).toMatchObject([{ status: 500, code: 'internal_error', reason: 'invalid_cost', keyId }])
        // Nothing was counted for the refused request.
        const next = await get(app, '/me/whoami', key)
        expect(next.status).toBe(200)
        expect(next.headers['ratelimit']).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
      })

      it(`subscription.isExempt as ${kind}: a JSON 500, reported to onError and onDecision`, async () => {
        const bug = new Error(`predicate bug ${randomUUID()}`)
        const errors: Error[] = []
        const events: DecisionEvent[] = []
        const app = start({
          subscription: { isExempt: (path) => (path === '/me/billing' ? raise(bug) : false) },
          onError: (error) => void errors.push(error),
          onDecision: (event) => void events.push(event),
        })
        const { key } = await mint(app, unpaid)
        const res = await get(app, '/me/billing', key)
        expectJsonError(res, 500, 'internal_error', INTERNAL_ERROR_MESSAGE)
        expect(res.text).not.toContain('predicate bug')
        expect(errors).toEqual([bug])
        expect(events).toMatchObject([{ status: 500, code: 'internal_error', reason: 'internal_error' }])
        expect((await get(app, '/me/tenant', key)).status).toBe(402)
      })

      it(`saikuErrors({ onError }) as ${kind}: still the JSON 500, one warning per distinct message`, async () => {
        const id = randomUUID()
        const app = start({}, { errorsOnError: () => raise(new Error(`error reporter down ${id}`)) })
        const { key } = await mint(app, acme)
        for (let i = 0; i < 3; i++) {
          const res = await get(app, '/me/boom', key)
          expectJsonError(res, 500, 'internal_error', INTERNAL_ERROR_MESSAGE)
          expect(res.text).not.toContain('hunter2')
          expect(res.text).not.toContain('error reporter down')
          expect(res.text).not.toMatch(/<html|<pre|\n\s+at /i)
        }
        await vi.waitFor(() => expect(hookWarnings(id)).toHaveLength(1), SETTLED)
        expect(hookWarnings(id)[0]).toBe(
          `Saiku auth: the saikuErrors().onError hook threw or rejected, and was ignored: Error: error reporter down ${id}`,
        )
        // An error after the response started: the reply is cut short as always, and the server answers on.
        const cut = await rawGet(app.handler, '/me/fail-after-write', ['Authorization', `Bearer ${key}`])
        expect(cut.status).toBe(200)
        expect(cut.body).toBe('{"partial":')
        expect((await get(app, '/me/tenant', key)).status).toBe(200)
        expect(hookWarnings(id)).toHaveLength(1)
      })
    }

    it('awaits an async cost and an async exemption predicate', async () => {
      const app = start({
        cost: async ({ path }) => (await Promise.resolve(), path === '/me/tenant' ? 3 : 1),
        subscription: { isExempt: async (path) => (await Promise.resolve(), path === '/me/billing') },
      })
      const { key } = await mint(app, acme)
      const priced = await get(app, '/me/tenant', key)
      expect(priced.status).toBe(200)
      expect(priced.headers['ratelimit']).toBe('"minute";r=57;t=60, "hour";r=997;t=3600')
      const unpaidKey = (await mint(app, unpaid)).key
      expect((await get(app, '/me/billing', unpaidKey)).status).toBe(200)
      expectJsonError(await get(app, '/me/whoami', unpaidKey), 402, 'payment_required')
    })
  })
}
