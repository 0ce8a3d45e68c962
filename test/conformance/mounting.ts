// An app may mount the middleware twice, in routers, or as two instances: each request is counted once per limiter.
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { createMemoryLimiter, type SaikuOptions } from '@saiku/core'
import { createRedisLimiter } from '@saiku/redis'
import { redisUrl } from '@saiku/test-support/services'
import { acme, useConformance } from './context.js'
import type { AdapterHarness } from './harness.js'

export function describeMounting(harness: AdapterHarness): void {
  describe(`adapter conformance: ${harness.name}: mounting, routers and counted-once`, () => {
    const c = useConformance(harness)
    const { start, mint, get } = c

    it('counts a request once when the middleware is mounted twice', async () => {
      const app = start({}, { mountTwice: true })
      const { key } = await mint(app, acme)
      expect((await get(app, '/me/tenant', key)).headers['ratelimit']).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
      expect((await get(app, '/me/tenant', key)).headers['ratelimit']).toBe('"minute";r=58;t=60, "hour";r=998;t=3600')
      expect(c.fixtures.hits.tenant).toBe(2)
    })

    it('counts a request once per limiter when two instances share it (memory, Redis)', async () => {
      const backends: [string, NonNullable<SaikuOptions['limiter']>][] = [
        ['memory', { backend: createMemoryLimiter() }],
      ]
      const redis =
        redisUrl === undefined ? undefined : new Redis(redisUrl, { enableOfflineQueue: true, maxRetriesPerRequest: 1 })
      // The backend fails at once while its client is not ready: connect first.
      await redis?.ping()
      if (redis !== undefined)
        backends.push([
          'redis',
          { backend: createRedisLimiter({ client: redis, keyPrefix: `conformance-${randomUUID()}` }) },
        ])
      try {
        for (const [name, limiter] of backends) {
          const app = start({ limiter }, { secondInstance: true })
          const { key } = await mint(app, acme, [], name)
          const hits = c.fixtures.hits.tenant
          expect((await get(app, '/me/tenant', key)).headers['ratelimit']).toMatch(
            /^"minute";r=59;t=60, "hour";r=999;t=\d+$/,
          )
          expect((await get(app, '/me/tenant', key)).headers['ratelimit']).toMatch(
            /^"minute";r=58;t=\d+, "hour";r=998;t=\d+$/,
          )
          expect(c.fixtures.hits.tenant - hits).toBe(2)
        }
      } finally {
        redis?.disconnect()
      }
    })

    it('counts a request once in each of two limiters when two instances count apart', async () => {
      const app = start({}, { secondInstance: true })
      const { key } = await mint(app, acme)
      // The second instance's own limiter answers last: it counted this request once, as did the first.
      expect((await get(app, '/me/tenant', key)).headers['ratelimit']).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
      expect((await get(app, '/me/tenant', key)).headers['ratelimit']).toBe('"minute";r=58;t=60, "hour";r=998;t=3600')
    })
  })
}
