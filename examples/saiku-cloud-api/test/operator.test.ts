import { randomUUID } from 'node:crypto'
import { SqliteKeyStore } from '@saiku/sqlite'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { postgresUrl, redisUrl } from './services.js'
import { openDashboardStore } from '../src/dashboard/store/index.js'
import {
  cli,
  cliJson,
  processTimeout,
  startServer,
  tempDatabase,
  waitFor,
  type RunningServer,
  type TempDir,
} from './helpers.js'

// Its tests start server and CLI processes: bounds against a hang, scaled for a loaded machine.
vi.setConfig({ testTimeout: processTimeout(4), hookTimeout: processTimeout(3) })

interface Window {
  quota: number
  remaining: number
}
interface Observed {
  status: number
  minute: Window
  hour: Window
}

/** Reads `"minute";q=60;w=60, "hour";q=1000;w=3600` and `"minute";r=59;t=60, …` into quota and remaining per window. */
function rateLimitFields(headers: Headers): { minute: Window; hour: Window } {
  const field = (header: string, name: 'minute' | 'hour', param: 'q' | 'r'): number => {
    const value = headers.get(header)
    const match = value?.match(new RegExp(`"${name}";(?:[a-z]=\\d+;)*${param}=(\\d+)`))
    if (match == null) throw new Error(`${header}: no ${name} ${param} in ${JSON.stringify(value)}`)
    return Number(match[1])
  }
  return {
    minute: { quota: field('ratelimit-policy', 'minute', 'q'), remaining: field('ratelimit', 'minute', 'r') },
    hour: { quota: field('ratelimit-policy', 'hour', 'q'), remaining: field('ratelimit', 'hour', 'r') },
  }
}

const setups = [
  { name: 'SQLite, limits in memory', postgres: false, redis: false, skip: false },
  // The CLI writes to PostgreSQL; the server hears it through LISTEN/NOTIFY and counts in Redis.
  {
    name: 'PostgreSQL, limits in Redis',
    postgres: true,
    redis: true,
    skip: postgresUrl === undefined || redisUrl === undefined,
  },
]

describe.each(setups)('saiku tenants set, while a server runs ($name)', (setup) => {
  const schema = `saiku_ops_${randomUUID().replaceAll('-', '').slice(0, 12)}`
  let db: TempDir
  let env: Record<string, string>
  let server: RunningServer

  beforeAll(async () => {
    if (setup.skip) return
    db = tempDatabase()
    const databaseUrl = setup.postgres
      ? (() => {
          const url = new URL(postgresUrl!)
          url.searchParams.set('schema', schema)
          return url.toString()
        })()
      : db.databaseUrl
    env = { DATABASE_URL: databaseUrl, REDIS_URL: setup.redis ? redisUrl! : '', SAIKU_DATA_DIR: db.path }
    server = await startServer(env)
  })
  afterAll(async () => {
    await server?.stop()
    db?.remove()
    if (setup.postgres && postgresUrl !== undefined) {
      const pool = new pg.Pool({ connectionString: postgresUrl })
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      await pool.end()
    }
  })

  it.skipIf(setup.skip)(
    'applies a tier and limit change on the next request, within the staleness bound, and never resets the counts',
    async () => {
      await cliJson(['tenants', 'create', '--slug', 'shifty', '--tier', 'team', '--subscription', 'active'], env)
      const { secret } = await cliJson<{ secret: string }>(
        ['keys', 'create', '--tenant', 'shifty', '--label', 'steady'],
        env,
      )
      /** Requests this tenant had admitted so far: what both windows must have counted. */
      let admitted = 0
      const request = async (): Promise<Observed> => {
        const res = await fetch(`${server.url}/me/tenant`, { headers: { authorization: `Bearer ${secret}` } })
        await res.arrayBuffer()
        if (res.status === 200) admitted++
        return { status: res.status, ...rateLimitFields(res.headers) }
      }
      /** Requests until the server serves the new quota, each checked against the counts so far; returns the first under it. */
      const untilQuota = async (minuteQuota: number, previous: Observed['minute']['quota']): Promise<Observed> => {
        // A hang guard well above the bound (SQLite: 1 s; PostgreSQL: at once), for a loaded machine.
        const deadline = Date.now() + 15_000
        for (;;) {
          const seen = await request()
          if (seen.minute.quota !== previous) {
            expect(seen.minute.quota).toBe(minuteQuota)
            return seen
          }
          // Still the old quota, counted as before: admitted while it has room, refused (counting nothing) once spent.
          if (seen.status === 200) expect(seen.minute.remaining).toBe(previous - admitted)
          else expect([seen.status, seen.minute.remaining, admitted >= previous]).toEqual([429, 0, true])
          if (Date.now() > deadline)
            throw new Error(`the server still served the quota ${previous} 15 s after the change`)
          await new Promise((resolve) => setTimeout(resolve, 100))
        }
      }

      for (let i = 0; i < 5; i++) {
        const seen = await request()
        expect(seen).toEqual({
          status: 200,
          minute: { quota: 300, remaining: 300 - admitted },
          hour: { quota: 10_000, remaining: 10_000 - admitted },
        })
      }

      // Team → business: the new quotas, with every request made so far still counted.
      const business = await cliJson<{ tier: string; effectiveLimits: unknown; changed: boolean }>(
        ['tenants', 'set', '--slug', 'shifty', '--tier', 'business'],
        env,
      )
      expect(business).toMatchObject({
        tier: 'business',
        effectiveLimits: { perMinute: 1_000, perHour: 50_000 },
        changed: true,
      })
      const underBusiness = await untilQuota(1_000, 300)
      expect(underBusiness).toEqual({
        status: 200,
        minute: { quota: 1_000, remaining: 1_000 - admitted },
        hour: { quota: 50_000, remaining: 50_000 - admitted },
      })
      expect(admitted).toBeGreaterThan(5)

      // Own limits below what was already counted this minute: the next request is refused, so the count was kept.
      expect(
        (await cli(['tenants', 'set', '--slug', 'shifty', '--per-minute', '5', '--per-hour', '5000'], env)).code,
      ).toBe(0)
      const underOwn = await untilQuota(5, 1_000)
      expect(underOwn).toEqual({
        status: 429,
        minute: { quota: 5, remaining: 0 },
        hour: { quota: 5_000, remaining: 5_000 - admitted },
      })
      const refused = await fetch(`${server.url}/me/tenant`, { headers: { authorization: `Bearer ${secret}` } })
      expect(refused.status).toBe(429)
      expect(await refused.json()).toMatchObject({
        error: 'rate_limited',
        message: expect.stringMatching(/^Rate limit exceeded: 5 requests per minute\./),
      })
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)

      // Back to the tier's limits: admitted again, the count still the same.
      const back = await cliJson<{ limits: unknown; effectiveLimits: unknown }>(
        ['tenants', 'set', '--slug', 'shifty', '--tier-limits'],
        env,
      )
      expect(back).toMatchObject({ limits: null, effectiveLimits: { perMinute: 1_000, perHour: 50_000 } })
      const again = await untilQuota(1_000, 5)
      expect(again).toEqual({
        status: 200,
        minute: { quota: 1_000, remaining: 1_000 - admitted },
        hour: { quota: 50_000, remaining: 50_000 - admitted },
      })

      // A subscription change reaches the server the same way.
      expect((await cli(['tenants', 'set', '--slug', 'shifty', '--subscription', 'none'], env)).code).toBe(0)
      await waitFor(
        async () =>
          (await fetch(`${server.url}/me/tenant`, { headers: { authorization: `Bearer ${secret}` } })).status === 402,
        5_000,
      )
      const listed = await cliJson<{ tenantSlug: string; tier: string; subscription: { status: string } }[]>(
        ['tenants', 'list'],
        env,
      )
      expect(listed.find((t) => t.tenantSlug === 'shifty')).toMatchObject({
        tier: 'business',
        subscription: { status: 'none' },
      })
    },
    processTimeout(8),
  )

  it.skipIf(setup.skip)(
    'refuses bad arguments with exit 2 before opening the store, an unknown slug with 1, and writes nothing',
    async () => {
      await cliJson(['tenants', 'create', '--slug', 'steady', '--tier', 'business', '--subscription', 'active'], env)
      const cases: [string[], number, string][] = [
        [
          ['--tier', 'enterprise'],
          2,
          '--tier enterprise: the enterprise tier has no limits of its own; give --per-minute and --per-hour',
        ],
        [['--tier', 'gold'], 2, '--tier: expected one of starter, team, business, enterprise, got "gold"'],
        [['--per-minute', '0', '--per-hour', '10'], 2, '--per-minute: expected a positive integer, got "0"'],
        [['--per-minute', '-5', '--per-hour', '10'], 2, '--per-minute'],
        [['--per-minute', '2.5', '--per-hour', '10'], 2, '--per-minute: expected a positive integer, got "2.5"'],
        [['--per-minute', '10', '--per-hour', '1e3'], 2, '--per-hour: expected a positive integer, got "1e3"'],
        [['--per-minute', '100', '--per-hour', '99'], 2, '--per-hour: expected at least --per-minute (100), got 99'],
        [['--per-minute', '100'], 2, '--per-minute and --per-hour go together'],
        [['--per-minute', '10', '--per-hour', '100', '--tier-limits'], 2, '--tier-limits drops the limits'],
        [['--subscription', 'gold'], 2, '--subscription: expected one of none, trial, active, got "gold"'],
        [['--connection', 'x'], 2, '--connection: not an option of tenants set'],
        [[], 2, 'nothing to change'],
      ]
      // Checked before the store is opened, so one store is enough for these.
      for (const [args, code, message] of setup.postgres ? [] : cases) {
        const result = await cli(['tenants', 'set', '--slug', 'steady', ...args], env)
        expect(result.code, args.join(' ')).toBe(code)
        expect(result.stderr, args.join(' ')).toContain(message)
      }
      const missing = await cli(['tenants', 'set', '--tier', 'team'], env)
      expect([missing.code, missing.stderr]).toEqual([2, expect.stringContaining('--slug is required')])
      const badSlug = await cli(['tenants', 'set', '--slug', 'Not_A_Slug', '--tier', 'team', '--json'], env)
      expect(badSlug.code).toBe(2)
      expect(JSON.parse(badSlug.stderr)).toEqual({
        error: 'usage',
        message: expect.stringContaining('--slug: expected lower-case letters'),
      })
      const unknown = await cli(['tenants', 'set', '--slug', 'nobody-here', '--tier', 'team', '--json'], env)
      expect(unknown.code).toBe(1)
      expect(JSON.parse(unknown.stderr)).toEqual({ error: 'not_found', message: 'No tenant with slug "nobody-here".' })
      // An enterprise tenant cannot be sent back to its tier's limits: there are none.
      await cliJson(
        ['tenants', 'set', '--slug', 'steady', '--tier', 'enterprise', '--per-minute', '2000', '--per-hour', '90000'],
        env,
      )
      const noLimits = await cli(['tenants', 'set', '--slug', 'steady', '--tier-limits'], env)
      expect([noLimits.code, noLimits.stderr]).toEqual([
        2,
        expect.stringContaining('tenant "steady" would have no limits on the enterprise tier'),
      ])
      const unchanged = await cliJson<{ changed: boolean }>(
        ['tenants', 'set', '--slug', 'steady', '--per-minute', '2000', '--per-hour', '90000'],
        env,
      )
      expect(unchanged.changed).toBe(false)

      const listed = await cliJson<
        { tenantSlug: string; tier: string; limits: unknown; subscription: { status: string } }[]
      >(['tenants', 'list'], env)
      expect(listed.find((t) => t.tenantSlug === 'steady')).toMatchObject({
        tier: 'enterprise',
        limits: { perMinute: 2000, perHour: 90_000 },
        subscription: { status: 'active' },
      })
    },
    processTimeout(12),
  )
})

describe('member emails and connection names in the CLI (issue 23)', () => {
  let db: TempDir
  let env: Record<string, string>

  beforeAll(async () => {
    db = tempDatabase()
    env = { DATABASE_URL: db.databaseUrl, REDIS_URL: '', SAIKU_DATA_DIR: db.path }
    await cliJson(['tenants', 'create', '--slug', 'plain', '--tier', 'team'], env)
  }, processTimeout(3))
  afterAll(() => db?.remove())

  /** Raw controls (C0 but tab and line feed, DEL, C1) and format characters (bidi among them): what a terminal obeys. */
  const UNSAFE = /(?![\t\n])[\p{Cc}\p{Cf}]/u

  it(
    'refuses an email the sign-in form cannot submit, and shows what it refused escaped',
    async () => {
      for (const email of ['josé@example.com', 'ada@exämple.com', 'a\u001b[31m@example.com', 'ada\u202e@example.com']) {
        const result = await cli(['members', 'add', '--tenant', 'plain', '--email', email, '--role', 'viewer'], env)
        expect(result.code, JSON.stringify(email)).toBe(2)
        expect(result.stderr, JSON.stringify(email)).toContain('is not an email address the sign-in form accepts')
        expect(result.stderr, JSON.stringify(email)).not.toMatch(UNSAFE)
      }
      const members = await cliJson<unknown[]>(['members', 'list', '--tenant', 'plain'], env)
      expect(members).toEqual([])
      // What the form can submit is accepted, trimmed and lower-cased.
      const added = await cliJson<{ email: string }>(
        ['members', 'add', '--tenant', 'plain', '--email', " O'Brien+ops@Example.COM ", '--role', 'viewer'],
        env,
      )
      expect(added.email).toBe("o'brien+ops@example.com")
    },
    processTimeout(3),
  )

  it(
    'refuses a connection name with control, format or only invisible characters, as labels are',
    async () => {
      for (const [name, problem] of [
        ['warehouse\u009b[2J', 'must not contain control or format characters'],
        ['gnp.exe\u202e', 'must not contain control or format characters'],
        ['a\u001b]8;;http://evil.example\u0007', 'must not contain control or format characters'],
        ['\u3164', 'must contain a visible character'],
      ] as const) {
        const result = await cli(['tenants', 'create', '--slug', 'conn', '--tier', 'team', '--connection', name], env)
        expect(result.code, JSON.stringify(name)).toBe(2)
        expect(result.stderr, JSON.stringify(name)).toContain(`--connection: connection name ${problem}`)
      }
      const tenants = await cliJson<{ tenantSlug: string }[]>(['tenants', 'list'], env)
      expect(tenants.map((t) => t.tenantSlug)).not.toContain('conn')
      const made = await cliJson<{ connectionName: string }>(
        ['tenants', 'create', '--slug', 'conn', '--tier', 'team', '--connection', 'east-warehouse 東京'],
        env,
      )
      expect(made.connectionName).toBe('east-warehouse 東京')
    },
    processTimeout(3),
  )

  it(
    'prints stored emails and activity with such characters escaped, in text and in JSON',
    async () => {
      // Rows written before these checks existed.
      const store = new SqliteKeyStore(db.databaseUrl.slice('sqlite:'.length), { watchIntervalMs: 0 })
      const dashboard = await openDashboardStore(store)
      const tenant = (await store.findTenantBySlug('plain'))!
      await dashboard.addMember({
        memberId: randomUUID(),
        tenantId: tenant.tenantId,
        email: 'old\u009b[2J\u202e@example.com',
        role: 'viewer',
        passwordHash: 'scrypt$legacy',
        createdAt: new Date(),
      })
      await dashboard.recordActivity({
        tenantId: tenant.tenantId,
        actorType: 'member',
        actor: 'mallory\u001b[8m@example.com',
        action: 'member.added',
        target: 'x\u202eod.exe\tviewer\r\nforged',
        ip: '10.0.0.1',
      })
      store.close()
      const listed = await cli(['members', 'list', '--tenant', 'plain'], env)
      expect(listed.code).toBe(0)
      expect(listed.stdout).not.toMatch(UNSAFE)
      expect(listed.stdout).toContain('old\\u009b[2J\\u202e@example.com\tviewer')
      const activity = await cli(['activity', '--tenant', 'plain'], env)
      expect(activity.code).toBe(0)
      expect(activity.stdout).not.toMatch(UNSAFE)
      expect(activity.stdout).toContain(
        'member.added\tmallory\\u001b[8m@example.com\tx\\u202eod.exe\\u0009viewer\\u000d\\u000aforged\t10.0.0.1',
      )
      // One line per event: the stored line break did not make another.
      expect(activity.stdout).not.toMatch(/^forged/m)
      for (const command of [
        ['members', 'list', '--tenant', 'plain', '--json'],
        ['activity', '--tenant', 'plain', '--json'],
      ]) {
        const json = await cli(command, env)
        expect(json.stdout).not.toMatch(UNSAFE)
        // Escaped in the text, and read back as stored.
        expect(json.stdout).toMatch(/\\u009b|\\u001b/)
        expect(JSON.stringify(JSON.parse(json.stdout))).toMatch(/\u009b|\\u001b/)
      }
      // A legacy member can still be removed by the address stored.
      const removed = await cliJson<{ removed: boolean }>(
        ['members', 'remove', '--email', 'old\u009b[2J\u202e@example.com'],
        env,
      )
      expect(removed.removed).toBe(true)
    },
    processTimeout(3),
  )
})

describe("a tenant's own day and month quotas in the CLI", () => {
  let db: TempDir
  let env: Record<string, string>

  beforeAll(() => {
    db = tempDatabase()
    env = { DATABASE_URL: db.databaseUrl, REDIS_URL: '', SAIKU_DATA_DIR: db.path }
  })
  afterAll(() => db?.remove())

  interface Listed {
    tenantSlug: string
    limits: Record<string, number> | null
  }

  it(
    'tenants create and tenants set write --per-day and --per-month, and list and the summaries show them',
    async () => {
      const create = await cli(
        [
          'tenants',
          'create',
          '--slug',
          'initech',
          '--tier',
          'enterprise',
          '--subscription',
          'active',
          '--per-minute',
          '50',
          '--per-hour',
          '2000',
          '--per-day',
          '20000',
          '--per-month',
          '300000',
        ],
        env,
      )
      expect(create.code, create.stderr).toBe(0)
      expect(create.stdout).toContain(': enterprise, 50/min, 2000/h, 20000/day and 300000/month, subscription active.')
      const quotas = { perMinute: 50, perHour: 2000, perDay: 20_000, perMonth: 300_000 }
      const initech = async () =>
        (await cliJson<Listed[]>(['tenants', 'list'], env)).find((t) => t.tenantSlug === 'initech')
      expect((await initech())?.limits).toStrictEqual(quotas)
      const table = await cli(['tenants', 'list'], env)
      expect(table.stdout).toMatch(
        /^initech\tenterprise\tactive\t[0-9a-f-]{36}\t50\/min, 2000\/h, 20000\/day and 300000\/month$/m,
      )

      // The limits are given whole: a month without a day drops the day.
      const set = await cli(
        ['tenants', 'set', '--slug', 'initech', '--per-minute', '50', '--per-hour', '2000', '--per-month', '100000'],
        env,
      )
      expect(set.code, set.stderr).toBe(0)
      expect(set.stdout).toContain('enterprise, 50/min, 2000/h and 100000/month (its own), subscription active;')
      expect((await initech())?.limits).toStrictEqual({ perMinute: 50, perHour: 2000, perMonth: 100_000 })
      const again = await cliJson<{ changed: boolean; effectiveLimits: unknown }>(
        ['tenants', 'set', '--slug', 'initech', '--per-minute', '50', '--per-hour', '2000', '--per-month', '100000'],
        env,
      )
      expect(again).toMatchObject({ changed: false, effectiveLimits: { perMonth: 100_000 } })
      // Only the month changes: still a change, written.
      const monthOnly = await cliJson<{ changed: boolean }>(
        ['tenants', 'set', '--slug', 'initech', '--per-minute', '50', '--per-hour', '2000', '--per-month', '100001'],
        env,
      )
      expect(monthOnly.changed).toBe(true)
      const plain = await cli(['tenants', 'create', '--slug', 'hooli', '--tier', 'team'], env)
      expect(plain.code, plain.stderr).toBe(0)
      expect((await cliJson<Listed[]>(['tenants', 'list'], env)).find((t) => t.tenantSlug === 'hooli')?.limits).toBe(
        null,
      )
      expect((await cli(['tenants', 'list'], env)).stdout).toMatch(
        /^hooli\tteam\ttrialing\t[0-9a-f-]{36}\ttier limits$/m,
      )
    },
    processTimeout(6),
  )

  it(
    'refuses a bad --per-day or --per-month with exit 2 and a usage message, writing nothing',
    async () => {
      const cases: [string[], string][] = [
        [['--per-day', '1000'], "--per-day: a tenant's own limits; give it with --per-minute and --per-hour"],
        [['--per-month', '1000'], "--per-month: a tenant's own limits; give it with --per-minute and --per-hour"],
        [['--per-minute', '5', '--per-day', '1000'], '--per-minute and --per-hour go together'],
        [
          ['--per-minute', '5', '--per-hour', '50', '--per-day', '0'],
          '--per-day: expected a positive integer, got "0"',
        ],
        [
          ['--per-minute', '5', '--per-hour', '50', '--per-month', '1e6'],
          '--per-month: expected a positive integer, got "1e6"',
        ],
        [
          ['--per-minute', '5', '--per-hour', '50', '--per-day', '49'],
          '--per-day: expected at least --per-hour (50), got 49',
        ],
        [
          ['--per-minute', '5', '--per-hour', '50', '--per-day', '500', '--per-month', '499'],
          '--per-month: expected at least --per-day (500), got 499',
        ],
        [
          ['--per-minute', '5', '--per-hour', '50', '--per-month', '49'],
          '--per-month: expected at least --per-hour (50), got 49',
        ],
        [
          ['--per-minute', '5', '--per-hour', '50', '--per-month', '500', '--tier-limits'],
          '--tier-limits drops the limits that --per-minute and --per-hour set: give one or the other',
        ],
      ]
      for (const [args, message] of cases) {
        for (const command of [
          ['tenants', 'set', '--slug', 'initech'],
          ['tenants', 'create', '--slug', 'bad-quota', '--tier', 'enterprise'],
        ]) {
          // One parser serves both commands: create is checked on the cases it words its own way.
          if (command[1] === 'create' && !/at least|own limits/.test(message)) continue
          const result = await cli([...command, ...args, '--json'], env)
          expect(result.code, [...command, ...args].join(' ')).toBe(2)
          expect(JSON.parse(result.stderr), [...command, ...args].join(' ')).toEqual({ error: 'usage', message })
        }
      }
      const slugs = (await cliJson<Listed[]>(['tenants', 'list'], env)).map((t) => t.tenantSlug)
      expect(slugs).not.toContain('bad-quota')
      const help = await cli(['--help'], env)
      expect(help.stdout).toContain('[--per-minute N --per-hour N [--per-day N] [--per-month N] | --tier-limits]')
    },
    processTimeout(12),
  )
})
