// Credentials as they reach the adapter: the Authorization header, repeated header lines and the query
// string are handed to the core as sent, and its 401 and 400 go out with their challenge and body.
// How a header is parsed, and which keys pass, is decided in @saiku/core (pipeline-decisions.test.ts).
import request from 'supertest'
import { beforeAll, describe, expect, it, vi } from 'vitest'
import { mintApiKey } from '@saiku/core'
import { rawGet } from '@saiku/test-support/http'
import { createTestSigner, type TestSigner } from '@saiku/test-support/signed-tokens'
import {
  acme,
  BARE_CHALLENGE,
  expectJsonError,
  INVALID_TOKEN_CHALLENGE,
  T0,
  UNAUTHORIZED_BODY,
  useConformance,
} from './context.js'
import type { AdapterHarness } from './harness.js'

export function describeCredentials(harness: AdapterHarness): void {
  describe(`adapter conformance: ${harness.name}: credentials and challenges`, () => {
    const c = useConformance(harness)
    const { start, mint, get } = c

    it('answers a request without a key with 401 and a bare challenge, without a store lookup', async () => {
      const app = start()
      const findKey = vi.spyOn(c.store, 'findKey')
      const res = await get(app, '/me/tenant')
      expectJsonError(res, 401, 'unauthorized', UNAUTHORIZED_BODY.message)
      expect(res.headers['www-authenticate']).toBe(BARE_CHALLENGE)
      expect(res.headers['cache-control']).toBe('no-store')
      expect(findKey).not.toHaveBeenCalled()
    })

    it('answers unknown, revoked and expired keys with the same 401', async () => {
      const app = start()
      const revoked = await mint(app, acme)
      await app.authenticator.keys.revoke(acme.tenantId, revoked.keyId)
      const expiring = await app.authenticator.keys.create(acme.tenantId, {
        label: 'short',
        expiresAt: new Date(T0 + 60_000),
      })
      expect((await get(app, '/me/tenant', expiring.key)).status).toBe(200)
      c.clock.set(T0 + 60_000)

      const bodies = []
      for (const key of [mintApiKey().key, revoked.key, expiring.key]) {
        const res = await get(app, '/me/tenant', key)
        expectJsonError(res, 401, 'unauthorized')
        expect(res.headers['www-authenticate']).toBe(INVALID_TOKEN_CHALLENGE)
        bodies.push(res.text)
      }
      expect(new Set(bodies).size).toBe(1)
      expect(JSON.parse(bodies[0]!)).toEqual(UNAUTHORIZED_BODY)
    })

    it('answers two Authorization headers with 400 invalid_request, never with the first key', async () => {
      const app = start()
      const { key } = await mint(app, acme)
      // Two header lines, exactly as sent: Node would keep only the first in req.headers.
      const res = await rawGet(app.handler, '/me/tenant', [
        'Authorization',
        `Bearer ${key}`,
        'Authorization',
        `Bearer ${mintApiKey().key}`,
      ])
      expect(res.status).toBe(400)
      expect(JSON.parse(res.body)).toEqual({
        error: 'invalid_request',
        message: 'Send exactly one API key, in one Authorization header: "Authorization: Bearer <key>".',
      })
      expect(res.headers['www-authenticate']).toMatch(/^Bearer realm="saiku", error="invalid_request"/)
      expect(c.fixtures.hits.tenant).toBe(0)
    })

    it('never reads a key from the query string', async () => {
      const app = start()
      const { key } = await mint(app, acme)
      const onlyQuery = await request(app.handler).get(`/me/tenant?access_token=${key}`)
      expectJsonError(onlyQuery, 401, 'unauthorized')
      expect(onlyQuery.headers['www-authenticate']).toBe(BARE_CHALLENGE)
      const both = await get(app, `/me/tenant?access_token=${key}`, key)
      expectJsonError(both, 400, 'invalid_request')
    })

    describe('a signed token', () => {
      let signer: TestSigner
      beforeAll(async () => {
        signer = await createTestSigner(acme.tenantId, T0)
      })
      const jwtOptions = () => signer.jwtOptions
      const token = (claims: Record<string, unknown>, expiresAtMs: number) => signer.token(claims, expiresAtMs)

      it('accepts a JWT beside API keys, for the same tenant and the same budget', async () => {
        const app = start(jwtOptions())
        const { key } = await mint(app, acme)
        expect((await get(app, '/me/tenant', key)).status).toBe(200)
        const res = await get(app, '/me/tenant', await token({}, T0 + 300_000))
        expect(res.status).toBe(200)
        expect(res.body).toEqual({
          tenantId: acme.tenantId,
          tenantSlug: 'acme',
          tier: 'starter',
          connectionName: 'acme-warehouse',
        })
        expect(res.headers['ratelimit']).toBe('"minute";r=58;t=60, "hour";r=998;t=3600')
        expect((await get(app, '/me/api-keys', await token({}, T0 + 300_000))).status).toBe(200)
        expectJsonError(
          await get(app, '/me/api-keys', await token({ scope: 'billing:read' }, T0 + 300_000)),
          403,
          'forbidden',
        )
      })
    })
  })
}
