import { randomBytes, randomUUID, scryptSync } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import { Writable } from 'node:stream'
import express from 'express'
import pg from 'pg'
import { pino } from 'pino'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createAuthenticator, createKeyManager, type TenantAdminStore, type TenantRecord } from '@saiku/core'
import { saikuAuth, saikuErrors } from '@saiku/express'
import { PostgresKeyStore } from '@saiku/postgres'
import { SqliteKeyStore } from '@saiku/sqlite'
import { createDashboard, openDashboardStore } from '../src/dashboard/index.js'
import type { DashboardStore } from '../src/dashboard/store/index.js'
import { addMember } from '../src/dashboard/members.js'
import { PasswordGate, passwordCheckConcurrency } from '../src/dashboard/shared/password-gate.js'
import { createSignInCookies } from '../src/dashboard/shared/sign-in-cookies.js'
import { createTenant } from '../src/tenants.js'
import { tempDatabase, waitFor, type TempDir } from './helpers.js'
import { postgresUrl } from './services.js'

// The dashboard's sign-in over plain HTTP, in this process: its budgets under
// concurrency, throttling without lockout, the device cookie, the forms of
// several tabs, bodies that are not the form, and the bound on password checks.

const PASSWORD = 'the-right-password-1'
const MEMBER = 'ada@acme.example'
const settings = {
  idleTimeoutSeconds: 1_800,
  absoluteTimeoutSeconds: 43_200,
  trustProxy: 'loopback',
  publicOrigin: null,
}

/** JSON log lines, as pino writes them. */
function capturedLogger() {
  const lines: { level: number; msg: string }[] = []
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line))
      done()
    },
  })
  return { logger: pino({ level: 'info' }, stream), lines }
}

async function listen(app: express.Express): Promise<{ server: Server; url: string }> {
  const server = createServer(app)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}` }
}

/** A browser over fetch: its own cookie jar, and the address a trusted proxy says it has. */
class Client {
  readonly cookies = new Map<string, string>()
  constructor(
    readonly url: string,
    public address = '198.51.100.1',
  ) {}

  #headers(extra: Record<string, string> = {}): Record<string, string> {
    const cookie = [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ')
    return { 'x-forwarded-for': this.address, ...(cookie === '' ? {} : { cookie }), ...extra }
  }

  #keep(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';')
      const [name, value] = pair!.split('=') as [string, string]
      if (/Max-Age=0\b/.test(line)) this.cookies.delete(name)
      else this.cookies.set(name, value)
    }
  }

  async get(path: string): Promise<Response> {
    const res = await fetch(`${this.url}${path}`, { headers: this.#headers(), redirect: 'manual' })
    this.#keep(res)
    return res
  }

  /** Opens the sign-in page (a tab) and returns its form's token. */
  async openSignIn(): Promise<string> {
    const res = await this.get('/sign-in')
    expect(res.status).toBe(200)
    return (await res.text()).match(/name="_csrf" value="([^"]+)"/)![1]!
  }

  async post(
    path: string,
    body: string | FormData | undefined,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; headers: Headers; text: string }> {
    const res = await fetch(`${this.url}${path}`, {
      method: 'POST',
      headers: this.#headers({ origin: this.url, ...headers }),
      ...(body === undefined ? {} : { body }),
      redirect: 'manual',
    })
    this.#keep(res)
    return { status: res.status, headers: res.headers, text: await res.text() }
  }

  async signIn(email: string, password: string, token?: string) {
    const _csrf = token ?? (await this.openSignIn())
    return this.post('/sign-in', new URLSearchParams({ _csrf, email, password }).toString(), {
      'content-type': 'application/x-www-form-urlencoded',
    })
  }
}

/**
 * A stored hash at a small scrypt cost (hashes carry their parameters): these tests
 * count checks, and a machine shared with other test runs takes seconds per full-cost hash.
 */
function cheapHash(password: string): string {
  const salt = randomBytes(16)
  const hash = scryptSync(password.normalize('NFKC'), salt, 32, { N: 1024, r: 8, p: 1 })
  return `scrypt$N=1024,r=8,p=1$${salt.toString('base64url')}$${hash.toString('base64url')}`
}

/** The alert of a rendered sign-in page. */
const alertOf = (html: string): string | undefined => html.match(/role="alert">([^<]*)</)?.[1]
const count = (statuses: number[], status: number) => statuses.filter((s) => s === status).length

interface Dashboard {
  readonly url: string
  readonly store: TenantAdminStore
  readonly dashboard: DashboardStore
  readonly tenant: TenantRecord
  readonly lines: { level: number; msg: string }[]
  /** Moves the sign-in clock on. */
  advance(ms: number): void
  close(): Promise<void>
}

/**
 * The dashboard alone, on SQLite, with its own clock, behind a trusted proxy on loopback;
 * `wrap` stands between it and its store.
 */
async function startDashboard(wrap: (store: DashboardStore) => DashboardStore = (store) => store): Promise<Dashboard> {
  const db: TempDir = tempDatabase()
  const store = new SqliteKeyStore(db.databaseUrl.slice('sqlite:'.length), { watchIntervalMs: 0 })
  const dashboard = await openDashboardStore(store)
  const tenant = await createTenant(store, { slug: 'acme', tier: 'team', subscription: 'active' })
  await dashboard.addMember({
    memberId: randomUUID(),
    tenantId: tenant.tenantId,
    email: MEMBER,
    role: 'admin',
    passwordHash: cheapHash(PASSWORD),
    createdAt: new Date(),
  })
  let nowMs = Date.now()
  const { logger, lines } = capturedLogger()
  const authenticator = createAuthenticator(store, {})
  const app = express()
  app.set('trust proxy', 'loopback')
  app.use(createDashboard({ store, dashboard: wrap(dashboard), authenticator, logger, settings, now: () => nowMs }))
  const { server, url } = await listen(app)
  return {
    url,
    store,
    dashboard,
    tenant,
    lines,
    advance: (ms) => (nowMs += ms),
    async close() {
      server.close()
      authenticator.close()
      store.close()
      db.remove()
    },
  }
}

describe('the sign-in budgets', { timeout: 120_000 }, () => {
  let d: Dashboard
  beforeAll(async () => {
    d = await startDashboard()
  })
  afterAll(() => d?.close())
  afterEach(() => d.advance(2 * 3_600_000)) // every test starts with fresh windows

  it('charges before the password check: of 40 concurrent wrong passwords for one account from one address, at most 5 are checked', async () => {
    const client = new Client(d.url, '198.51.100.40')
    const token = await client.openSignIn()
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, i) => client.signIn(MEMBER, `wrong-password-${i}`, token)),
    )
    const statuses = answers.map((a) => a.status)
    // 401 only after a password check: no more than the account's budget at this address. The rest
    // are 429, or 503 from the bound on password checks (whose refusals spend nothing, so how many of
    // each depends on how long the checks took: a loaded machine answers more 503s).
    const checked = count(statuses, 401)
    expect(checked).toBeGreaterThanOrEqual(1)
    expect(checked).toBeLessThanOrEqual(5)
    expect(checked + count(statuses, 429) + count(statuses, 503)).toBe(40)
    for (const answer of answers.filter((a) => a.status === 429)) {
      expect(Number(answer.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
      expect(alertOf(answer.text)).toBe('Too many failed sign-in attempts. Try again in 1 minute.')
    }
    // One at a time, what is left of the budget is checked, and then no more: 5 checks in all.
    for (let i = 0; i < 5 - checked; i++)
      expect((await client.signIn(MEMBER, `wrong-again-${i}`, token)).status).toBe(401)
    expect((await client.signIn(MEMBER, 'wrong-once-more', token)).status).toBe(429)
    // The right password from there waits too: that address has spent its guesses at this account.
    expect((await client.signIn(MEMBER, PASSWORD, token)).status).toBe(429)
  })

  it('gives a successful sign-in back: a member who signs in often is never throttled', async () => {
    const client = new Client(d.url, '198.51.100.41')
    const token = await client.openSignIn()
    for (let i = 0; i < 12; i++) expect((await client.signIn(MEMBER, PASSWORD, token)).status).toBe(303)
  })

  it('throttles the attacker’s address, not the member: 20 wrong passwords an hour from elsewhere keep nobody out', async () => {
    const attacker = new Client(d.url, '203.0.113.9')
    const statuses: number[] = []
    for (let minute = 0; minute < 4; minute++) {
      for (let i = 0; i < 6; i++) statuses.push((await attacker.signIn(MEMBER, `guess-${minute}-${i}`)).status)
      d.advance(61_000)
    }
    // Five guesses a minute at most, twenty an hour.
    expect(count(statuses, 401)).toBe(20)
    const refused = await attacker.signIn(MEMBER, 'one-more-guess')
    expect(refused.status).toBe(429)
    expect(alertOf(refused.text)).toMatch(/^Too many failed sign-in attempts\. Try again in (5\d|60) minutes\.$/)
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(3_000)
    // The member, from their own address, in a browser that never signed in before.
    const member = new Client(d.url, '192.0.2.10')
    expect((await member.signIn(MEMBER, PASSWORD)).status).toBe(303)
  })

  it('lets a browser that signed in before through a flood spread over many addresses, and records the throttling once a minute', async () => {
    const known = new Client(d.url, '192.0.2.20')
    const knownForm = await known.openSignIn()
    expect((await known.signIn(MEMBER, PASSWORD, knownForm)).status).toBe(303)
    const device = known.cookies.get('saiku_device')
    expect(device).toMatch(/^[\w-]{22}\.[\w-]{24}$/)
    const activityBefore = (await d.dashboard.listActivity(d.tenant.tenantId, 1_000)).filter(
      (e) => e.action === 'sign_in.throttled',
    ).length

    // 30 addresses, one guess each: the account-wide budget (20 a minute) runs out.
    // One after another: all at once, most would be refused by the bound on password checks instead.
    const spread = []
    for (let i = 0; i < 30; i++)
      spread.push(await new Client(d.url, `203.0.113.${100 + i}`).signIn(MEMBER, `spread-${i}`))
    expect(
      count(
        spread.map((a) => a.status),
        401,
      ),
    ).toBe(20)
    expect(
      count(
        spread.map((a) => a.status),
        429,
      ),
    ).toBe(10)
    // A stranger, even with the right password, waits; a browser that signed in before does not.
    const stranger = new Client(d.url, '192.0.2.21')
    const waited = await stranger.signIn(MEMBER, PASSWORD)
    expect(waited.status).toBe(429)
    expect(alertOf(waited.text)).toBe('Too many failed sign-in attempts. Try again in 1 minute.')
    expect((await known.signIn(MEMBER, PASSWORD, knownForm)).status).toBe(303)
    // The device cookie is bound to the account and signed: another account's, or a forged one, is a stranger's.
    const copied = new Client(d.url, '192.0.2.22')
    copied.cookies.set(
      'saiku_device',
      device!.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')),
    )
    expect((await copied.signIn(MEMBER, PASSWORD)).status).toBe(429)

    const throttled = (await d.dashboard.listActivity(d.tenant.tenantId, 1_000)).filter(
      (e) => e.action === 'sign_in.throttled',
    )
    // Eleven throttled attempts in this minute, one line.
    expect(throttled.length - activityBefore).toBe(1)
    expect(throttled[0]).toMatchObject({ actor: MEMBER, target: 'too many failures' })
    d.advance(61_000)
    // A minute on, the flood goes on and gets a new line.
    for (let i = 0; i < 25; i++) await new Client(d.url, `203.0.113.${150 + i}`).signIn(MEMBER, `later-${i}`)
    const later = (await d.dashboard.listActivity(d.tenant.tenantId, 1_000)).filter(
      (e) => e.action === 'sign_in.throttled',
    )
    expect(later.length - activityBefore).toBe(2)
  })

  it('lets a stolen device cookie guess only a few times before it is a stranger’s again', async () => {
    const known = new Client(d.url, '192.0.2.30')
    expect((await known.signIn(MEMBER, PASSWORD)).status).toBe(303)
    // Spend the account-wide budget from many addresses.
    for (let i = 0; i < 20; i++) await new Client(d.url, `203.0.113.${200 + i}`).signIn(MEMBER, `spend-${i}`)
    const thief = (i: number) => {
      const client = new Client(d.url, `198.18.0.${i}`)
      client.cookies.set('saiku_device', known.cookies.get('saiku_device')!)
      return client
    }
    const guesses: number[] = []
    for (let i = 0; i < 8; i++) guesses.push((await thief(i).signIn(MEMBER, `stolen-${i}`)).status)
    expect(guesses).toEqual([401, 401, 401, 401, 401, 429, 429, 429])
  })
})

describe('sign-in forms and bodies', { timeout: 60_000 }, () => {
  let d: Dashboard
  beforeAll(async () => {
    d = await startDashboard()
  })
  afterAll(() => d?.close())
  afterEach(() => d.advance(2 * 3_600_000))

  it('refuses forms other sites make a visitor’s browser send, charging nobody: the visitor still signs in', async () => {
    // A page on another site posts hidden forms to the sign-in from its visitor's browser, at the visitor's address.
    const before = d.lines.length
    const visitor = new Client(d.url, '198.51.100.80')
    const _csrf = await visitor.openSignIn()
    const crossSite = { origin: 'https://evil.example' }
    const answers: number[] = []
    for (let i = 0; i < 15; i++) {
      const form = new URLSearchParams({ _csrf, email: MEMBER, password: `guess-${i}` }).toString()
      answers.push(
        (await visitor.post('/sign-in', form, { ...crossSite, 'content-type': 'application/x-www-form-urlencoded' }))
          .status,
      )
      answers.push((await visitor.post('/sign-in', 'x', { ...crossSite, 'content-type': 'text/plain' })).status)
      answers.push((await visitor.post('/sign-in', undefined, { 'sec-fetch-site': 'cross-site', origin: '' })).status)
    }
    expect(answers).toEqual(Array.from({ length: 45 }, () => 403))
    expect(d.lines.slice(before).filter((line) => line.msg === 'refused form: origin')).toHaveLength(45)
    // Nothing was spent at that address or on that account.
    expect((await visitor.signIn(MEMBER, PASSWORD)).status).toBe(303)
  })

  it('logs a refused origin in a line of bounded length, however long the forged Host and path', async () => {
    const client = new Client(d.url, '198.51.100.70')
    const _csrf = await client.openSignIn()
    const forgedHost = `${'h'.repeat(8_000)}.example`
    const before = d.lines.length
    const refusedLines = () => d.lines.slice(before).filter((line) => line.msg === 'refused form: origin')
    const form = new URLSearchParams({ _csrf, email: MEMBER, password: 'whatever' }).toString()
    const headers = {
      'content-type': 'application/x-www-form-urlencoded',
      origin: 'http://evil.example',
      'x-forwarded-host': forgedHost,
    }
    expect((await client.post('/sign-in', form, headers)).status).toBe(403)
    expect((await client.post(`/api-keys/${'k'.repeat(8_000)}/revoke`, form, headers)).status).toBe(403)
    const lines = refusedLines()
    expect(lines).toHaveLength(2)
    for (const line of lines) expect(JSON.stringify(line).length).toBeLessThan(2_000)
    expect(lines[0]).toMatchObject({ path: '/sign-in', expected: `http://${forgedHost}`.slice(0, 300) })
    expect(lines[1]).toMatchObject({ path: `/api-keys/${'k'.repeat(8_000)}/revoke`.slice(0, 300) })
  })

  it('accepts the form of every open sign-in tab, not only the last one rendered', async () => {
    const browser = new Client(d.url, '198.51.100.50')
    const tabs = [await browser.openSignIn(), await browser.openSignIn(), await browser.openSignIn()]
    expect((await browser.signIn(MEMBER, PASSWORD, tabs[0])).status).toBe(303)
    expect((await browser.signIn(MEMBER, PASSWORD, tabs[1])).status).toBe(303)
    // A form another browser rendered is not this one's; nor is one older than an hour.
    const other = new Client(d.url, '198.51.100.51')
    const theirs = await other.openSignIn()
    expect((await browser.signIn(MEMBER, PASSWORD, theirs)).status).toBe(403)
    d.advance(3_601_000)
    expect((await browser.signIn(MEMBER, PASSWORD, tabs[2])).status).toBe(403)
  })

  it('answers a body that is not the form with 415, no body with 400, logs below error, and throttles them', async () => {
    const client = new Client(d.url, '198.51.100.60')
    const token = await client.openSignIn()
    const multipart = new FormData()
    multipart.set('_csrf', token)
    multipart.set('email', MEMBER)
    multipart.set('password', PASSWORD)
    const cases: [string | FormData | undefined, Record<string, string>, number][] = [
      [`_csrf=${token}&email=${MEMBER}&password=${PASSWORD}`, { 'content-type': 'text/plain' }, 415],
      [multipart, {}, 415],
      [
        JSON.stringify({ _csrf: token, email: MEMBER, password: PASSWORD }),
        { 'content-type': 'application/json' },
        415,
      ],
      [undefined, {}, 400],
    ]
    for (const [body, headers, status] of cases) {
      const answer = await client.post('/sign-in', body, headers)
      expect(answer.status, JSON.stringify(headers)).toBe(status)
      expect(answer.headers.get('content-type')).toMatch(/^text\/html/)
      expect(answer.text).toContain('Sign in with the form on the sign-in page.')
    }
    // A form too large, or with a charset the parser refuses.
    expect(
      (
        await client.post('/sign-in', `a=${'x'.repeat(10_000)}`, {
          'content-type': 'application/x-www-form-urlencoded',
        })
      ).status,
    ).toBe(413)
    expect(
      (await client.post('/sign-in', 'a=b', { 'content-type': 'application/x-www-form-urlencoded; charset=koi8-r' }))
        .status,
    ).toBe(415)
    expect(d.lines.filter((line) => line.level >= 50)).toEqual([])
    // Six refusals so far; four more fill the address's ten a minute, then even the right form waits.
    for (let i = 0; i < 4; i++)
      expect((await client.post('/sign-in', 'x', { 'content-type': 'text/plain' })).status).toBe(415)
    const after = await client.signIn(MEMBER, PASSWORD, token)
    expect(after.status).toBe(429)
    expect(after.headers.get('retry-after')).not.toBeNull()
  })
})

describe('the bound on password checks', () => {
  it('runs at most UV_THREADPOOL_SIZE − 2 checks (at least 1), and reads a bad size as the default 4', () => {
    expect(passwordCheckConcurrency({}, 8)).toBe(2)
    expect(passwordCheckConcurrency({ UV_THREADPOOL_SIZE: '8' }, 16)).toBe(6)
    expect(passwordCheckConcurrency({ UV_THREADPOOL_SIZE: '2' }, 16)).toBe(1)
    expect(passwordCheckConcurrency({ UV_THREADPOOL_SIZE: 'lots' }, 16)).toBe(2)
    // And one CPU is left to the event loop.
    expect(passwordCheckConcurrency({ UV_THREADPOOL_SIZE: '16' }, 4)).toBe(3)
    expect(passwordCheckConcurrency({}, 2)).toBe(1)
    expect(passwordCheckConcurrency({}, 1)).toBe(1)
  })

  it('runs `concurrency` checks, queues `queueLength`, refuses the rest at once, and hands each place on in order', async () => {
    const gate = new PasswordGate({ concurrency: 2, queueLength: 2 })
    const release: (() => void)[] = []
    const started: number[] = []
    const runs = Array.from({ length: 6 }, (_, i) =>
      gate.run(
        () =>
          new Promise<number>((resolve) => {
            started.push(i)
            release.push(() => resolve(i))
          }),
      ),
    )
    expect(runs.map((run) => run === null)).toEqual([false, false, false, false, true, true])
    await new Promise((resolve) => setImmediate(resolve))
    expect(started).toEqual([0, 1])
    expect(gate.stats).toEqual({ running: 2, waiting: 2, refused: 2 })
    release[0]!()
    await runs[0]
    await new Promise((resolve) => setImmediate(resolve))
    // The place went to the first in the queue.
    expect(started).toEqual([0, 1, 2])
    expect(gate.stats).toEqual({ running: 2, waiting: 1, refused: 2 })
    release[1]!()
    await new Promise((resolve) => setImmediate(resolve))
    release[2]!()
    await new Promise((resolve) => setImmediate(resolve))
    release[3]!()
    expect(await Promise.all(runs.slice(0, 4).map(async (run) => (await run!).value))).toEqual([0, 1, 2, 3])
    expect(started).toEqual([0, 1, 2, 3])
    expect(gate.stats).toEqual({ running: 0, waiting: 0, refused: 2 })
    const failing = gate.run(() => Promise.reject(new Error('store down')))
    await expect(failing).rejects.toThrow('store down')
    expect(gate.stats.running).toBe(0)
  })

  it('drops a waiting check whose client left: out of the queue at once, its work never run, its place in line given on', async () => {
    const gate = new PasswordGate({ concurrency: 1, queueLength: 2 })
    let releaseFirst = () => {}
    const started: string[] = []
    const work = (name: string) => () => {
      started.push(name)
      return name === 'first'
        ? new Promise<string>((resolve) => (releaseFirst = () => resolve(name)))
        : Promise.resolve(name)
    }
    const first = gate.run(work('first'))
    const gone = new AbortController()
    const leaving = gate.run(work('leaving'), gone.signal)
    const staying = gate.run(work('staying'))
    expect(gate.stats).toEqual({ running: 1, waiting: 2, refused: 0 })
    gone.abort()
    expect(gate.stats).toEqual({ running: 1, waiting: 1, refused: 0 })
    await expect(leaving).rejects.toThrow(/abort/i)
    // Its place in the queue is free for someone else at once.
    const late = gate.run(work('late'))
    expect(late).not.toBeNull()
    releaseFirst()
    expect([(await first!).value, (await staying!).value, (await late!).value]).toEqual(['first', 'staying', 'late'])
    expect(started).toEqual(['first', 'staying', 'late'])
    expect(gate.stats).toEqual({ running: 0, waiting: 0, refused: 0 })
    // Already gone when it asks: never queued.
    await expect(gate.run(work('never'), AbortSignal.abort())!).rejects.toThrow(/abort/i)
    expect(started).not.toContain('never')
  })

  it('never checks the password of a sign-in whose client hung up while it waited, and gives its queue place to the next', async () => {
    // One check at a time and a queue of two, whatever this machine has.
    const poolSize = process.env.UV_THREADPOOL_SIZE
    process.env.UV_THREADPOOL_SIZE = '3'
    let lookups = 0
    let unblock = () => {}
    const blocked = new Promise<void>((resolve) => (unblock = resolve))
    let d: Dashboard
    try {
      d = await startDashboard((store) => ({
        ...store,
        // The first lookup holds the only place until the test lets it go.
        async findMemberByEmail(email) {
          if (++lookups === 1) await blocked
          return store.findMemberByEmail(email)
        },
      }))
    } finally {
      if (poolSize === undefined) delete process.env.UV_THREADPOOL_SIZE
      else process.env.UV_THREADPOOL_SIZE = poolSize
    }
    try {
      /** A sign-in page opened from `address`, and a function that posts its form with a wrong password. */
      const prepare = async (address: string) => {
        const client = new Client(d.url, address)
        const _csrf = await client.openSignIn()
        return (signal?: AbortSignal) =>
          fetch(`${d.url}/sign-in`, {
            method: 'POST',
            headers: {
              'x-forwarded-for': address,
              origin: d.url,
              cookie: [...client.cookies].map(([name, value]) => `${name}=${value}`).join('; '),
              'content-type': 'application/x-www-form-urlencoded',
            },
            body: new URLSearchParams({ _csrf, email: MEMBER, password: 'wrong-password' }).toString(),
            redirect: 'manual',
            ...(signal === undefined ? {} : { signal }),
          })
      }
      /** The answer, or null when none came within `ms` (the check is waiting in the queue). */
      const within = (answer: Promise<Response>, ms: number) =>
        Promise.race([answer, new Promise<null>((resolve) => setTimeout(() => resolve(null), ms))])
      const [first, second, third, fourth, fifth, sixth] = await Promise.all(
        ['60', '61', '62', '63', '64', '65'].map((last) => prepare(`198.51.100.${last}`)),
      )
      const running = first!()
      await waitFor(() => lookups === 1, 10_000)
      const hangUp = new AbortController()
      for (const post of [second!, third!]) post(hangUp.signal).catch(() => {})
      // The queue is full: a fourth is refused at once.
      await waitFor(async () => (await within(fourth!(), 10_000))?.status === 503, 15_000)
      hangUp.abort()
      // The two that hung up leave the queue: two newcomers wait there instead of being refused.
      const newcomers: Promise<Response>[] = []
      for (const post of [fifth!, sixth!]) {
        await waitFor(async () => {
          const answer = post()
          if ((await within(answer, 1_000)) !== null) return false
          newcomers.push(answer)
          return true
        }, 10_000)
      }
      unblock()
      expect((await running).status).toBe(401)
      expect((await Promise.all(newcomers)).map((answer) => answer.status)).toEqual([401, 401])
      // The running one and the two newcomers: the two that left were never looked up.
      expect(lookups).toBe(3)
    } finally {
      unblock()
      await d.close()
    }
  })

  it('signs sign-in tokens and device cookies with the server key only', () => {
    const ours = createSignInCookies(Buffer.alloc(32, 1))
    const theirs = createSignInCookies(Buffer.alloc(32, 2))
    const browser = ours.newBrowserId()
    const token = ours.formToken(browser, 1_000_000)
    expect(ours.checkFormToken(browser, token, 1_000_000)).toBe(true)
    expect(theirs.checkFormToken(browser, token, 1_000_000)).toBe(false)
    expect(ours.checkFormToken(ours.newBrowserId(), token, 1_000_000)).toBe(false)
    const cookie = ours.rememberDevice(undefined, 'ada@acme.example')
    expect(ours.deviceFor(cookie, 'ada@acme.example')).toMatch(/^[\w-]{22}$/)
    expect(ours.deviceFor(cookie, 'bob@acme.example')).toBeNull()
    expect(theirs.deviceFor(cookie, 'ada@acme.example')).toBeNull()
    // Several accounts in one browser, at most five, the latest first; the same account keeps its ID.
    let shared = cookie
    for (const name of ['b', 'c', 'd', 'e', 'f']) shared = ours.rememberDevice(shared, `${name}@acme.example`)
    expect(shared.split('~')).toHaveLength(5)
    expect(ours.deviceFor(shared, 'f@acme.example')).not.toBeNull()
    expect(ours.deviceFor(shared, 'ada@acme.example')).toBeNull()
    const again = ours.rememberDevice(shared, 'c@acme.example')
    expect(ours.deviceFor(again, 'c@acme.example')).toBe(ours.deviceFor(shared, 'c@acme.example'))
  })
})

describe.skipIf(postgresUrl === undefined)('a sign-in flood on PostgreSQL', { timeout: 120_000 }, () => {
  const schema = `saiku_signin_${randomUUID().replaceAll('-', '').slice(0, 12)}`
  let pool: pg.Pool
  let store: PostgresKeyStore
  let server: Server
  let url: string
  let close: () => void
  let lines: { level: number; msg: string }[]
  const keys: string[] = []

  beforeAll(async () => {
    // Cold connections: one idle for 20 ms is closed, so nearly every lookup opens one, with its SCRAM handshake.
    pool = new pg.Pool({
      connectionString: postgresUrl,
      max: 10,
      idleTimeoutMillis: 20,
      connectionTimeoutMillis: 5_000,
    })
    pool.on('error', () => {})
    store = new PostgresKeyStore({ pool, schema, listen: false })
    await store.ready()
    const dashboard = await openDashboardStore(store)
    const tenant = await createTenant(store, { slug: 'flood', tier: 'team', subscription: 'active' })
    await addMember(dashboard, tenant, { email: MEMBER, role: 'admin', password: PASSWORD })
    // Minted beside the server, so none is in its cache: each first call is a store lookup.
    const manager = createKeyManager(store)
    for (let i = 0; i < 48; i++) keys.push((await manager.create(tenant.tenantId, { label: `agent-${i}` })).key)
    const captured = capturedLogger()
    lines = captured.lines
    // The reference server's dashboard in front of the API's middleware, with a store deadline of 5 s rather
    // than 1 s: a machine this loaded is slow enough without any flood, and a starved thread pool is far slower.
    const auth = saikuAuth(store, {
      keyStoreTimeoutMs: 5_000,
      onError: (error) => captured.logger.error({ msg: 'store failure', err: { message: error.message } }),
    })
    const app = express()
    app.set('trust proxy', 'loopback')
    app.use(createDashboard({ store, dashboard, authenticator: auth.authenticator, logger: captured.logger, settings }))
    app.use(auth)
    app.get('/me/tenant', (req, res) => res.json(req.saiku!.tenant))
    app.use(saikuErrors())
    close = () => auth.authenticator.close()
    ;({ server, url } = await listen(app))
  }, 60_000)
  afterAll(async () => {
    server?.close()
    close?.()
    await store?.close()
    await pool?.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await pool?.end()
  })

  it('keeps answering valid API keys while anonymous sign-ins flood the password checks, which refuse past their bound', async () => {
    let flooding = true
    const signIns: number[] = []
    // Twelve sign-ins in flight at any time, each from a new address (as a botnet's would be), for unknown emails:
    // few requests for the event loop, many hashes for the thread pool.
    const flooder = async (worker: number) => {
      const client = new Client(url, `10.${worker}.255.255`)
      const token = await client.openSignIn()
      for (let n = 0; flooding; n++) {
        client.address = `10.${worker}.${n >> 8}.${n & 255}`
        const { status } = await client.signIn(`nobody-${worker}-${n}@flood.example`, 'a-wrong-password', token)
        signIns.push(status)
        // Refused at once, the client comes back soon, not in a loop as tight as this process's own.
        if (status === 503) await new Promise((resolve) => setTimeout(resolve, 300))
      }
    }
    // The check of an unknown email hashes against a dummy made at its first use: made now, not in the flood.
    expect((await new Client(url, '10.255.255.255').signIn('first@flood.example', 'a-wrong-password')).status).toBe(401)
    const flood = Promise.all(Array.from({ length: 12 }, (_, worker) => flooder(worker)))
    try {
      await new Promise((resolve) => setTimeout(resolve, 1_000))
      const api: { status: number; body: string }[] = []
      // Each key once, four at a time: 48 lookups, most of them on a new connection.
      for (let i = 0; i < keys.length; i += 4) {
        api.push(
          ...(await Promise.all(
            keys.slice(i, i + 4).map(async (key) => {
              const res = await fetch(`${url}/me/tenant`, { headers: { authorization: `Bearer ${key}` } })
              return { status: res.status, body: await res.text() }
            }),
          )),
        )
      }
      expect(api.filter((a) => a.status !== 200)).toEqual([])
    } finally {
      flooding = false
      await flood
    }
    // The flood reached the bound: some sign-ins were refused by it (503), none failed otherwise.
    expect(count(signIns, 503)).toBeGreaterThan(0)
    expect(signIns.filter((s) => s !== 401 && s !== 503)).toEqual([])
    expect(lines.filter((line) => line.level >= 50)).toEqual([])
  })
})
