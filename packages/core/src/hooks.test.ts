import { randomUUID } from 'node:crypto'
import { describe, expect, it, vi } from 'vitest'
import { createAuthenticator } from './authenticator.js'
import type { AuthRequest } from './decision.js'
import { MemoryKeyStore } from './store.js'
import { conformanceTenant } from './testing.js'

const request = (token: string): AuthRequest => ({
  headers: { authorization: `Bearer ${token}` },
  method: 'GET',
  url: '/me/tenant',
})

describe('onDecision without an onError', () => {
  for (const [kind, raise] of [
    ['rejects', async (error: Error): Promise<never> => Promise.reject(error)],
    [
      'throws',
      (error: Error): never => {
        throw error
      },
    ],
  ] as const) {
    it(`that ${kind} is one warning per distinct message, and the decisions stand`, async () => {
      const warnings = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
      const id = randomUUID()
      const store = new MemoryKeyStore()
      const tenant = conformanceTenant()
      store.putTenant(tenant)
      const auth = createAuthenticator(store, {
        onDecision: (event) => raise(new Error(`audit sink down ${id}: a ${event.status}`)),
      })
      const { key } = await auth.keys.create(tenant.tenantId, { label: 'agent' })
      for (let i = 0; i < 3; i++) expect(await auth.authenticate(request('garbage'))).toMatchObject({ status: 401 })
      for (let i = 0; i < 2; i++) expect((await auth.authenticate(request(key))).ok).toBe(true)
      const ours = (): string[] =>
        warnings.mock.calls.filter(([message]) => String(message).includes(id)).map(([message]) => String(message))
      await vi.waitFor(() => expect(ours()).toHaveLength(2), { timeout: 10_000 })
      expect(ours().sort()).toEqual([
        `Saiku auth: the onDecision hook threw or rejected, and was ignored: Error: audit sink down ${id}: a 200`,
        `Saiku auth: the onDecision hook threw or rejected, and was ignored: Error: audit sink down ${id}: a 401`,
      ])
      auth.close()
    })
  }
})
