// A deploy restarts the server while one address (a NAT gateway: many clients behind one IP) sends garbage:
// the valid keys of the tenants behind that address must keep working after the restart, whatever the
// garbage did to the address's failed-authentication budget. On PostgreSQL and Redis, as in production.
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { postgresUrl, redisUrl } from './services.js'
import { cliJson, startServer, tempDatabase, type RunningServer, type TempDir } from './helpers.js'

const skip = postgresUrl === undefined || redisUrl === undefined
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A key of the minted shape whose checksum (its last characters) fails: the server turns it away unread. */
function badChecksum(key: string): string {
  return `${key.slice(0, -1)}${key.endsWith('0') ? '1' : '0'}`
}

describe.skipIf(skip)('a restart beside a garbage flood from one address (PostgreSQL, limits in Redis)', () => {
  const schema = `saiku_flood_${randomUUID().replaceAll('-', '').slice(0, 12)}`
  let db: TempDir
  let env: Record<string, string>
  let server: RunningServer | undefined
  const secrets: string[] = []

  beforeAll(async () => {
    db = tempDatabase()
    const url = new URL(postgresUrl!)
    url.searchParams.set('schema', schema)
    env = { DATABASE_URL: url.toString(), REDIS_URL: redisUrl!, SAIKU_DATA_DIR: db.path }
    // Five enterprise tenants, one key each, all used from the flooding address.
    for (let i = 0; i < 5; i++) {
      const slug = `nat-${i}`
      await cliJson(
        [
          'tenants',
          'create',
          '--slug',
          slug,
          '--tier',
          'enterprise',
          '--per-minute',
          '100000',
          '--per-hour',
          '1000000',
        ].concat(['--subscription', 'active']),
        env,
      )
      const { secret } = await cliJson<{ secret: string }>(
        ['keys', 'create', '--tenant', slug, '--label', 'agent'],
        env,
      )
      secrets.push(secret)
    }
  }, 180_000)

  afterAll(async () => {
    await server?.stop()
    db?.remove()
    const pool = new pg.Pool({ connectionString: postgresUrl })
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await pool.end()
  })

  it('refuses each valid key from the flooding address at most a few times after the restart, then admits it', async () => {
    server = await startServer(env)
    let target = server.url
    let flooding = true
    let garbageSent = 0
    // Well-formed unknown keys still to send: their checksum holds, so each costs a store lookup.
    let wellFormedLeft = 30
    const garbageStatuses = new Map<number, number>()
    // About 100 garbage requests a second from this one address, across the restart: after each start, first 30
    // well-formed unknown keys (together they spend the address's whole budget), then keys whose checksum fails
    // and tokens that are no key at all.
    const template = secrets[0]!
    const unknownKey = () =>
      `${template.slice(0, 8)}${randomUUID().replaceAll('-', '').slice(0, 12)}${template.slice(20)}`
    const flood = async (worker: number): Promise<void> => {
      while (flooding && garbageSent < 3_000) {
        const n = garbageSent++
        const wellFormed = wellFormedLeft > 0
        if (wellFormed) wellFormedLeft--
        const token = wellFormed ? unknownKey() : n % 3 === 0 ? `garbage-${worker}-${n}` : badChecksum(unknownKey())
        try {
          const res = await fetch(`${target}/me/tenant`, { headers: { authorization: `Bearer ${token}` } })
          await res.arrayBuffer()
          garbageStatuses.set(res.status, (garbageStatuses.get(res.status) ?? 0) + 1)
        } catch {
          // The server is restarting: the request found nothing listening.
        }
        await sleep(40)
      }
    }
    const workers = Array.from({ length: 4 }, (_, worker) => flood(worker))
    try {
      await sleep(1_500)
      // The deploy: the server stops and a new one starts, with nothing cached and the flood still running.
      await server.stop()
      server = await startServer(env)
      target = server.url
      wellFormedLeft = 30
      // The garbage runs alone for a while, as it did before the valid keys came back in the report.
      await sleep(1_500)
      expect(garbageStatuses.get(429) ?? 0).toBeGreaterThan(0)

      // Each valid key, every 100 ms, until it has been admitted ten times in a row (a hang guard of 30 s).
      const refusedBeforeAdmitted = await Promise.all(
        secrets.map(async (secret) => {
          const refusals: number[] = []
          let admittedInARow = 0
          const deadline = Date.now() + 30_000
          while (admittedInARow < 10 && Date.now() < deadline) {
            const res = await fetch(`${target}/me/tenant`, { headers: { authorization: `Bearer ${secret}` } })
            await res.arrayBuffer()
            if (res.status === 200) admittedInARow++
            else {
              // Once admitted, a key stays admitted.
              expect(admittedInARow).toBe(0)
              refusals.push(res.status)
            }
            await sleep(100)
          }
          expect(admittedInARow).toBe(10)
          return refusals
        }),
      )
      for (const refusals of refusedBeforeAdmitted) expect(refusals.length).toBeLessThanOrEqual(3)
      // The flood was real: it reached the server and was answered as garbage, mostly 429 by now.
      expect(garbageSent).toBeGreaterThan(200)
      expect([...garbageStatuses.keys()].every((status) => status === 401 || status === 429)).toBe(true)
    } finally {
      flooding = false
      await Promise.all(workers)
    }
  }, 180_000)
})
