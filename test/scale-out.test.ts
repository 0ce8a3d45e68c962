import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import {
  cliJson,
  processTimeout,
  startServer,
  waitFor,
  type RunningServer,
} from '../examples/saiku-cloud-api/test/helpers.js'
import { postgresUrl, redisUrl } from '@saiku/test-support/services'

const LIMIT = 60 // starter, per minute

// Three server processes in the hook, three more and a few CLI runs in a test: bounds scaled for a loaded machine.
vi.setConfig({ testTimeout: processTimeout(6), hookTimeout: processTimeout(3) })

async function status(
  server: RunningServer,
  key: string,
  init: RequestInit = {},
  path = '/me/tenant',
): Promise<number> {
  const res = await fetch(`${server.url}${path}`, { ...init, headers: { authorization: `Bearer ${key}` } })
  await res.arrayBuffer()
  return res.status
}

/** 5×L concurrent requests for one tenant, spread round-robin over the servers: how many were admitted. */
async function burst(
  servers: RunningServer[],
  key: string,
): Promise<{ admitted: number; refused: number; other: number }> {
  const statuses = await Promise.all(
    Array.from({ length: 5 * LIMIT }, (_, i) => status(servers[i % servers.length]!, key)),
  )
  return {
    admitted: statuses.filter((s) => s === 200).length,
    refused: statuses.filter((s) => s === 429).length,
    other: statuses.filter((s) => s !== 200 && s !== 429).length,
  }
}

describe.skipIf(redisUrl === undefined || postgresUrl === undefined)(
  'three server processes on one Redis and one PostgreSQL',
  () => {
    const schema = `saiku_scale_${randomUUID().replaceAll('-', '').slice(0, 12)}`
    const databaseUrl = (() => {
      const url = new URL(postgresUrl ?? 'postgres://unused')
      url.searchParams.set('schema', schema)
      return url.toString()
    })()
    const env = { DATABASE_URL: databaseUrl }
    let servers: RunningServer[] = []

    beforeAll(async () => {
      // Express, Express and Koa: the same limits must hold whatever serves the request.
      servers = await Promise.all([
        startServer({ ...env, REDIS_URL: redisUrl! }),
        startServer({ ...env, REDIS_URL: redisUrl! }),
        startServer({ ...env, REDIS_URL: redisUrl! }, 'koa'),
      ])
    })
    afterAll(async () => {
      await Promise.all(servers.map((server) => server.stop()))
      const pool = new pg.Pool({ connectionString: postgresUrl })
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      await pool.end()
    })

    async function tenantWithKey(slug: string, permissions = 'keys:read,keys:write'): Promise<string> {
      await cliJson(['tenants', 'create', '--slug', slug, '--tier', 'starter', '--subscription', 'active'], env)
      return (
        await cliJson<{ secret: string }>(
          ['keys', 'create', '--tenant', slug, '--label', 'load', '--permissions', permissions],
          env,
        )
      ).secret
    }

    it('admits exactly L of 5×L concurrent requests across all three (Redis)', async () => {
      expect(servers.map((s) => s.logs.find((l) => l.msg === 'listening')?.limiter)).toEqual(
        Array(3).fill(expect.stringMatching(/^Redis /)),
      )
      const key = await tenantWithKey('shared-budget')
      const result = await burst(servers, key)
      expect(result).toEqual({ admitted: LIMIT, refused: 4 * LIMIT, other: 0 })
    })

    it('admits L in every process with the memory backend: why Redis is needed', async () => {
      const memoryEnv = { ...env, REDIS_URL: '' }
      const memory = await Promise.all([startServer(memoryEnv), startServer(memoryEnv), startServer(memoryEnv, 'koa')])
      try {
        expect(memory.map((s) => s.logs.find((l) => l.msg === 'listening')?.limiter)).toEqual(
          Array(3).fill('memory (this process only)'),
        )
        const key = await tenantWithKey('per-process-budget')
        const result = await burst(memory, key)
        expect(result).toEqual({ admitted: 3 * LIMIT, refused: 2 * LIMIT, other: 0 })
      } finally {
        await Promise.all(memory.map((server) => server.stop()))
      }
    })

    it('refuses a key revoked through one process in the others within the bound', async () => {
      const admin = await tenantWithKey('revocations')
      const { secret, keyId } = await cliJson<{ secret: string; keyId: string }>(
        ['keys', 'create', '--tenant', 'revocations', '--label', 'doomed'],
        env,
      )
      // Every process has the key cached (for the 10 s TTL) before it is revoked.
      for (const server of servers) expect(await status(server, secret)).toBe(200)
      const revokedAt = Date.now()
      expect(await status(servers[0]!, admin, { method: 'DELETE' }, `/me/api-keys/${keyId}`)).toBe(204)
      await waitFor(
        async () => (await status(servers[1]!, secret)) === 401 && (await status(servers[2]!, secret)) === 401,
        2_000,
      )
      const propagationMs = Date.now() - revokedAt
      console.log(`revocation reached the other processes in ${propagationMs} ms`)
      expect(await status(servers[0]!, secret)).toBe(401)
    })
  },
)
