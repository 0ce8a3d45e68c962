import { randomUUID } from 'node:crypto'
import { describe, expect, it, vi } from 'vitest'
import { createKeyManager, MemoryKeyStore } from '@saiku/core'
import { conformanceTenant } from '@saiku/core/testing'
import { createRedisChangeFeed, type RedisSubscriber } from './index.js'

// A publisher that cannot publish, and a subscriber that hears nothing: no Redis needed.
const silentSubscriber: RedisSubscriber = {
  on: () => undefined,
  off: () => undefined,
  subscribe: () => Promise.resolve(),
  unsubscribe: () => Promise.resolve(),
}

const RAISE = [
  ['rejects', async (error: Error): Promise<never> => Promise.reject(error)],
  [
    'throws',
    (error: Error): never => {
      throw error
    },
  ],
] as const

describe('createRedisChangeFeed', () => {
  for (const [kind, raise] of RAISE) {
    it(`reports a publish that ${kind} to onError, and revocation goes on`, async () => {
      const store = new MemoryKeyStore()
      const tenant = conformanceTenant()
      store.putTenant(tenant)
      const errors: Error[] = []
      const feed = await createRedisChangeFeed(store, {
        publisher: { publish: () => raise(new Error('Redis is down')) },
        subscriber: silentSubscriber,
        onError: (error) => void errors.push(error),
      })
      const keys = createKeyManager(store)
      const { keyId } = await keys.create(tenant.tenantId, { label: 'agent' })
      expect(await keys.revoke(tenant.tenantId, keyId)).toBe(true)
      await vi.waitFor(() => expect(errors.map((error) => error.message)).toEqual(['Redis is down']), {
        timeout: 10_000,
      })
      await feed.close()
    })

    it(`turns an onError that ${kind} into one warning per distinct message`, async () => {
      const warnings = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
      const id = randomUUID()
      const store = new MemoryKeyStore()
      const tenant = conformanceTenant()
      store.putTenant(tenant)
      const feed = await createRedisChangeFeed(store, {
        publisher: { publish: () => Promise.reject(new Error('Redis is down')) },
        subscriber: silentSubscriber,
        onError: (error) => raise(new Error(`log sink down ${id}: ${error.message}`)),
      })
      const keys = createKeyManager(store)
      for (let i = 0; i < 3; i++) {
        const { keyId } = await keys.create(tenant.tenantId, { label: 'agent' })
        expect(await keys.revoke(tenant.tenantId, keyId)).toBe(true)
      }
      // Three failed publishes (a revocation each), said once; the grace lets any second one show.
      await vi.waitFor(() => expect(warnings.mock.calls.some(([message]) => String(message).includes(id))).toBe(true), {
        timeout: 10_000,
      })
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect(warnings.mock.calls.filter(([message]) => String(message).includes(id))).toEqual([
        [
          `Saiku auth: the change feed onError hook threw or rejected, and was ignored: Error: log sink down ${id}: Redis is down`,
          { code: 'SAIKU_HOOK_FAILED' },
        ],
      ])
      await feed.close()
    })
  }

  it('refuses an onError that is not a function', async () => {
    await expect(
      createRedisChangeFeed(new MemoryKeyStore(), {
        publisher: { publish: () => Promise.resolve() },
        subscriber: silentSubscriber,
        onError: 'log' as never,
      }),
    ).rejects.toThrow('onError: expected a function')
  })
})
