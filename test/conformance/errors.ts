// Whatever fails, the reply is the spec's JSON body, never a framework page, a leaked message or a second answer.
import request from 'supertest'
import { describe, expect, it, vi } from 'vitest'
import { rawGet } from '@saiku/test-support/http'
import { acme, expectJsonError, unpaid, useConformance } from './context.js'
import type { AdapterHarness } from './harness.js'

export function describeErrors(harness: AdapterHarness): void {
  describe(`adapter conformance: ${harness.name}: error handling and error bodies`, () => {
    const c = useConformance(harness)
    const { start, mint, get } = c

    it('answers unknown routes and handler crashes with the JSON shape, revealing nothing', async () => {
      const app = start()
      const { key } = await mint(app, acme)
      expectJsonError(await get(app, '/me/nothing-here', key), 404, 'not_found')
      const boom = await get(app, '/me/boom', key)
      expectJsonError(boom, 500, 'internal_error', 'An unexpected error occurred.')
      expect(boom.text).not.toContain('hunter2')
      expect(boom.headers['etag']).toBeUndefined()
      expect(Number(boom.headers['content-length'])).toBe(Buffer.byteLength(boom.text))
    })

    it("passes a handler's error on unchanged and once", async () => {
      const app = start()
      const { key } = await mint(app, acme)
      expectJsonError(await get(app, '/me/boom', key), 500, 'internal_error')
      expect(c.fixtures.errors).toHaveLength(1)
      expect((c.fixtures.errors[0] as Error).message).toBe('database password is hunter2')
    })

    it('never answers twice, nor with a 401, once a response has started', async () => {
      const app = start()
      const { key } = await mint(app, acme)
      const res = await rawGet(app.handler, '/me/fail-after-write', ['Authorization', `Bearer ${key}`])
      expect(res.status).toBe(200)
      expect(res.body).toBe('{"partial":')
      expect(c.fixtures.errors).toHaveLength(1)
      expect((c.fixtures.errors[0] as Error).message).toBe('failed after the response started')
    })

    it('answers 503 when the key store throws and the policy is closed, never 401', async () => {
      const app = start()
      const { key } = await mint(app, acme)
      vi.spyOn(c.store, 'findKey').mockRejectedValue(new Error('connection refused: password=hunter2'))
      const res = await get(app, '/me/tenant', key)
      expectJsonError(res, 503, 'service_unavailable')
      expect(res.text).not.toContain('hunter2')
    })

    it('answers a throwing exemption predicate with a JSON 500, never a rejection', async () => {
      const errors: Error[] = []
      const app = start({
        subscription: {
          isExempt: () => {
            throw new Error('predicate bug')
          },
        },
        onError: (e) => errors.push(e),
      })
      const res = await get(app, '/me/tenant', (await mint(app, unpaid)).key)
      expectJsonError(res, 500, 'internal_error', 'An unexpected error occurred.')
      expect(errors[0]?.message).toBe('predicate bug')
    })

    it('answers 503, never 500, when the store fails under key management', async () => {
      const app = start()
      const { key, keyId } = await mint(app, acme, ['keys:write'])
      expect((await get(app, '/me/tenant', key)).status).toBe(200)
      vi.spyOn(c.store, 'revokeKey').mockRejectedValue(new Error('ECONNREFUSED'))
      const res = await request(app.handler).delete(`/me/api-keys/${keyId}`).set('Authorization', `Bearer ${key}`)
      expectJsonError(res, 503, 'service_unavailable')
      vi.spyOn(c.store, 'createKey').mockRejectedValue(new Error('ECONNREFUSED'))
      await expect(app.authenticator.keys.create(acme.tenantId, { label: 'during-outage' })).rejects.toMatchObject({
        name: 'SaikuStoreError',
      })
    })
  })
}
