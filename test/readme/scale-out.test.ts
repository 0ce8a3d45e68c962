import { randomUUID } from 'node:crypto'
import express from 'express'
import pg from 'pg'
import request from 'supertest'
import { describe, expect, it } from 'vitest'
import { PostgresKeyStore } from '@saiku/postgres'
import { postgresUrl, redisUrl } from '@saiku/test-support/services'
import { sharedAuth } from './scale-out.js'

/** Whether `check` comes to hold, tried every 20 ms for at most `deadlineMs`. */
async function eventually(check: () => Promise<boolean>, deadlineMs: number): Promise<boolean> {
  const until = Date.now() + deadlineMs
  while (Date.now() < until) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return check()
}

// The scaling guide's set-up, as two servers of one deployment: one count of the limits, and a revocation made
// through one server refused by the other.
describe.skipIf(postgresUrl === undefined || redisUrl === undefined)("the scaling guide's shared set-up", () => {
  it('counts one tenant once across two servers, and a key revoked through one is refused by the other', async () => {
    const schema = `readme_scale_${randomUUID().replaceAll('-', '').slice(0, 16)}`
    const url = new URL(postgresUrl!)
    url.searchParams.set('schema', schema)
    const servers = [await sharedAuth(url.toString(), redisUrl!), await sharedAuth(url.toString(), redisUrl!)]
    const admin = new pg.Pool({ connectionString: postgresUrl, max: 1 })
    try {
      const apps = servers.map(({ auth }) =>
        express()
          .use(auth)
          .get('/me/tenant', (req, res) => {
            res.json(req.saiku!.tenant)
          }),
      )
      // An enterprise tenant of 3 a minute, written as an operator would: enough to see one count for both servers.
      const tenantId = randomUUID()
      const writer = new PostgresKeyStore({ pool: admin, schema, listen: false })
      await writer.putTenant({
        tenantId,
        tenantSlug: `scale-${tenantId.slice(0, 8)}`,
        tier: 'enterprise',
        limits: { perMinute: 3, perHour: 100 },
        connectionName: 'w',
        subscription: { status: 'active' },
      })
      const { key, keyId } = await servers[0]!.auth.authenticator.keys.create(tenantId, { label: 'shared' })
      const call = (app: express.Express) => request(app).get('/me/tenant').set('Authorization', `Bearer ${key}`)
      const statuses = []
      for (const app of [apps[0]!, apps[1]!, apps[0]!, apps[1]!]) statuses.push((await call(app)).status)
      expect(statuses).toEqual([200, 200, 200, 429])

      // The second server has the key cached; the revocation reaches it through PostgreSQL's NOTIFY.
      expect(await servers[0]!.auth.authenticator.keys.revoke(tenantId, keyId)).toBe(true)
      expect(await eventually(async () => (await call(apps[1]!)).status === 401, 10_000)).toBe(true)
      await writer.close()
    } finally {
      for (const server of servers) await server.close()
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      await admin.end()
    }
  }, 60_000)
})
