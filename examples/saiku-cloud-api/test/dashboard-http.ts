import { randomBytes, randomUUID, scryptSync } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import express from 'express'
import pg from 'pg'
import { pino } from 'pino'
import { expect } from 'vitest'
import { createAuthenticator, type TenantAdminStore, type TenantRecord } from '@saiku/core'
import { PostgresKeyStore } from '@saiku/postgres'
import { SqliteKeyStore } from '@saiku/sqlite'
import { createDashboard, openDashboardStore } from '../src/dashboard/index.js'
import { openWebhookSql } from '../src/webhooks/sql.js'
import { createEndpointStore } from '../src/webhooks/endpoints.js'
import type { DashboardStore, Member, Role } from '../src/dashboard/store/index.js'
import { createTenant } from '../src/tenants.js'
import { tempDatabase, type TempDir } from './helpers.js'
import { postgresUrl } from './services.js'

// The dashboard alone, in this process, with its own clock, behind a trusted proxy on loopback, and a browser
// over fetch to drive it: for the account-security tests over HTTP and in Chromium.

/**
 * A stored hash at a small scrypt cost (hashes carry their parameters): a machine shared with other test runs
 * takes seconds per full-cost hash.
 */
export function cheapHash(password: string): string {
  const salt = randomBytes(16)
  const hash = scryptSync(password.normalize('NFKC'), salt, 32, { N: 1024, r: 8, p: 1 })
  return `scrypt$N=1024,r=8,p=1$${salt.toString('base64url')}$${hash.toString('base64url')}`
}

export interface InProcessDashboard {
  readonly url: string
  /** The database, for the CLI. */
  readonly databaseUrl: string
  readonly store: TenantAdminStore
  readonly dashboard: DashboardStore
  readonly tenant: TenantRecord
  /** The dashboard's clock now. */
  now(): number
  /** Moves the dashboard's clock on. */
  advance(ms: number): void
  /** Adds a member of `tenant` (default: the acme tenant) with a password. */
  addMember(email: string, password: string, role?: Role, tenant?: TenantRecord): Promise<Member>
  close(): Promise<void>
}

export async function startInProcessDashboard(database: 'sqlite' | 'postgres' = 'sqlite'): Promise<InProcessDashboard> {
  let db: TempDir | undefined
  let pool: pg.Pool | undefined
  let schema = ''
  let store: SqliteKeyStore | PostgresKeyStore
  if (database === 'sqlite') {
    db = tempDatabase()
    store = new SqliteKeyStore(db.databaseUrl.slice('sqlite:'.length), { watchIntervalMs: 0 })
  } else {
    schema = `saiku_2fa_${randomUUID().replaceAll('-', '').slice(0, 12)}`
    pool = new pg.Pool({ connectionString: postgresUrl, max: 8 })
    store = new PostgresKeyStore({ pool, schema, listen: false })
  }
  const dashboard = await openDashboardStore(store)
  const tenant = await createTenant(store, { slug: 'acme', tier: 'team', subscription: 'active' })
  let nowMs = Date.now()
  const authenticator = createAuthenticator(store, {})
  // The Webhooks page too, with receivers on loopback allowed as in development.
  const endpoints = createEndpointStore(
    await openWebhookSql(store),
    { allowLoopback: true, allowPrivate: false },
    () => nowMs,
  )
  const app = express()
  app.set('trust proxy', 'loopback')
  app.use(
    createDashboard({
      store,
      dashboard,
      authenticator,
      logger: pino({ level: 'silent' }),
      settings: {
        idleTimeoutSeconds: 1_800,
        absoluteTimeoutSeconds: 43_200,
        trustProxy: 'loopback',
        publicOrigin: null,
      },
      now: () => nowMs,
      webhooks: endpoints,
    }),
  )
  const server: Server = createServer(app)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    databaseUrl: db?.databaseUrl ?? `${postgresUrl}${postgresUrl!.includes('?') ? '&' : '?'}schema=${schema}`,
    store,
    dashboard,
    tenant,
    now: () => nowMs,
    advance: (ms) => (nowMs += ms),
    async addMember(email, password, role = 'admin', of = tenant) {
      const member: Member = {
        memberId: randomUUID(),
        tenantId: of.tenantId,
        email,
        role,
        passwordHash: cheapHash(password),
        createdAt: new Date(),
      }
      await dashboard.addMember(member)
      return member
    },
    async close() {
      server.closeAllConnections()
      server.close()
      authenticator.close()
      if (store instanceof SqliteKeyStore) store.close()
      else await store.close()
      db?.remove()
      if (pool !== undefined) {
        await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
        await pool.end()
      }
    },
  }
}

export interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly text: string
}

/** A browser over fetch: its own cookie jar, the address a trusted proxy says it has, and a User-Agent. */
export class Client {
  readonly cookies = new Map<string, string>()
  constructor(
    readonly url: string,
    public address = '198.51.100.1',
    public userAgent = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36',
  ) {}

  #headers(extra: Record<string, string> = {}): Record<string, string> {
    const cookie = [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ')
    return {
      'x-forwarded-for': this.address,
      'user-agent': this.userAgent,
      ...(cookie === '' ? {} : { cookie }),
      ...extra,
    }
  }

  #keep(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';')
      const [name, value] = pair!.split('=') as [string, string]
      if (/Max-Age=0\b/.test(line)) this.cookies.delete(name)
      else this.cookies.set(name, value)
    }
  }

  async get(path: string): Promise<Answer> {
    const res = await fetch(`${this.url}${path}`, { headers: this.#headers(), redirect: 'manual' })
    this.#keep(res)
    return { status: res.status, headers: res.headers, text: await res.text() }
  }

  /** Posts a form, as a page of this site does unless `headers` say otherwise. */
  async post(
    path: string,
    fields: Record<string, string | string[]>,
    headers: Record<string, string> = {},
  ): Promise<Answer> {
    const body = new URLSearchParams()
    for (const [name, value] of Object.entries(fields))
      for (const item of Array.isArray(value) ? value : [value]) body.append(name, item)
    const res = await fetch(`${this.url}${path}`, {
      method: 'POST',
      headers: this.#headers({ origin: this.url, 'content-type': 'application/x-www-form-urlencoded', ...headers }),
      body: body.toString(),
      redirect: 'manual',
    })
    this.#keep(res)
    return { status: res.status, headers: res.headers, text: await res.text() }
  }

  /** The password step: answers its redirect (to the code step, the set-up, or a page). */
  async signIn(email: string, password: string): Promise<Answer> {
    const page = await this.get('/sign-in')
    expect(page.status).toBe(200)
    return this.post('/sign-in', { _csrf: csrfOf(page.text), email, password })
  }

  /** The CSRF token of a page this client opens. */
  async csrf(path = '/account'): Promise<string> {
    const page = await this.get(path)
    expect(page.status).toBe(200)
    return csrfOf(page.text)
  }
}

export const csrfOf = (html: string): string => html.match(/name="_csrf" value="([^"]+)"/)![1]!
export const alertOf = (html: string): string | undefined => html.match(/role="alert">([^<]*)</)?.[1]
export const noticeOf = (html: string): string | undefined => html.match(/role="status">([^<]*)</)?.[1]
/** The base32 secret of a set-up page. */
export const secretOf = (html: string): string =>
  html.match(/aria-label="Two-factor secret">([^<]+)</)![1]!.replace(/\s/g, '')
export const recoveryCodesOf = (html: string): string[] =>
  [...html.matchAll(/<li><code>([a-z2-9]{5}-[a-z2-9]{5})<\/code><\/li>/g)].map((m) => m[1]!)
