import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { mkdirSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { join } from 'node:path'
import pg from 'pg'
import type { BrowserContext, Locator, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { postgresUrl } from './services.js'
import { hasChromium, launchBrowser, type Browser } from './browser.js'
import {
  cliJson,
  exampleDir,
  processTimeout,
  waitFor,
  repoRoot,
  startServer,
  tempDatabase,
  type RunningServer,
  type TempDir,
} from './helpers.js'

// Its tests start server and CLI processes: bounds against a hang, scaled for a loaded machine.
vi.setConfig({ testTimeout: processTimeout(3), hookTimeout: processTimeout(3) })

// The dashboard, driven the way people use it: Debian's Chromium through
// playwright-core, against the real server process, by role and accessible name.

const browserAvailable = hasChromium()
// Outside what git tracks, so a test run changes no tracked file; `pnpm docs:screenshots`
// copies them to docs/dashboard/, which the reference server's README shows.
const SCREENSHOTS = join(repoRoot, '.cache/screenshots/dashboard')
const XSS_LABEL = '<img src=x onerror=alert(1)>'

/** Waits until the element is shown (playwright-core has no web-first assertions). */
async function shown(locator: Locator): Promise<void> {
  await locator.first().waitFor({ state: 'visible', timeout: 30_000 })
}

/** Follows a link of the sidebar and waits for its page. */
async function nav(page: Page, name: string): Promise<void> {
  await page.getByRole('navigation', { name: 'Dashboard' }).getByRole('link', { name, exact: true }).click()
  await shown(page.getByRole('heading', { level: 1, name, exact: true }))
}

/** The page's HTML once it stops navigating (Back may resubmit a form, which redirects). */
async function settledContent(page: Page): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    await page.waitForLoadState('load')
    try {
      return await page.content()
    } catch (error) {
      if (attempt >= 10) throw error
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  }
}

interface Credentials {
  readonly email: string
  readonly password: string
}

/** The demo member `pnpm start` prints on a fresh store. */
function demoMember(server: RunningServer): Credentials {
  const match = server.stderr().match(/email:\s+(\S+)\n\s+password:\s+(\S+)/)
  if (match === null) throw new Error(`no demo member in the banner:\n${server.stderr()}`)
  return { email: match[1]!, password: match[2]! }
}

/** `saiku …` with standard input (for --password-stdin). */
async function cliWithInput(
  args: string[],
  env: Record<string, string>,
  input: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [join(exampleDir, 'bin/saiku.mjs'), ...args], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  child.stdin.end(input)
  const [code] = (await once(child, 'exit')) as [number]
  return { code, stdout, stderr }
}

async function apiGet(server: RunningServer, path: string, key: string): Promise<Response> {
  return fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${key}` } })
}

async function signIn(page: Page, server: RunningServer, who: Credentials): Promise<void> {
  await page.goto(`${server.url}/sign-in`)
  await page.getByLabel('Email').fill(who.email)
  await page.getByLabel('Password').fill(who.password)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await shown(page.getByRole('heading', { level: 1, name: 'Overview' }))
}

/** Opens the API keys page from the sidebar, creates a key, and returns its ID and the secret read back from the clipboard. */
async function createKeyInBrowser(
  page: Page,
  label: string,
  options: { copy: boolean } = { copy: true },
): Promise<{ keyId: string; secret: string }> {
  await nav(page, 'API keys')
  await page.getByRole('button', { name: 'Create key' }).click()
  await shown(page.getByRole('heading', { level: 1, name: 'Create key' }))
  await page.getByLabel('Label').fill(label)
  const response = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/api-keys'))
  await page.getByRole('button', { name: 'Create key' }).click()
  const created = await response
  expect(created.headers()['cache-control']).toBe('no-store')
  await shown(page.getByRole('heading', { name: 'Copy your secret key now' }))
  await shown(page.getByText('It will not be shown again.'))
  const displayed = await page.getByRole('textbox', { name: 'Secret key' }).inputValue()
  let secret = displayed
  if (options.copy) {
    await page.getByRole('button', { name: 'Copy' }).click()
    await shown(page.getByRole('status').filter({ hasText: 'The secret is on your clipboard.' }))
    secret = await page.evaluate<string>('navigator.clipboard.readText()')
    expect(secret).toBe(displayed)
  }
  expect(secret).toMatch(/^sk_live_[A-Za-z0-9]{12}_\w+$/)
  expect(page.url()).not.toContain(secret)
  const keyId = secret.split('_')[2]!
  return { keyId, secret }
}

function rowOf(page: Page, keyId: string) {
  return page.getByRole('row').filter({ has: page.getByRole('cell', { name: keyId, exact: true }) })
}

/** The remaining-count of the hour window in a draft-11 RateLimit field. */
function hourRemaining(response: Response): number {
  return Number(response.headers.get('ratelimit')!.match(/"hour";r=(\d+)/)![1])
}

interface Started {
  server: RunningServer
  env: Record<string, string>
  cleanup(): Promise<void>
}

async function startOnSqlite(extra: Record<string, string> = {}): Promise<Started> {
  const db: TempDir = tempDatabase()
  const env = { DATABASE_URL: db.databaseUrl, REDIS_URL: '', SAIKU_DATA_DIR: db.path, ...extra }
  const server = await startServer(env)
  return {
    server,
    env,
    async cleanup() {
      await server.stop()
      db.remove()
    },
  }
}

async function startOnPostgres(): Promise<Started> {
  const schema = `saiku_dash_${randomUUID().replaceAll('-', '').slice(0, 12)}`
  const url = new URL(postgresUrl!)
  url.searchParams.set('schema', schema)
  const db = tempDatabase()
  const env = { DATABASE_URL: url.toString(), REDIS_URL: '', SAIKU_DATA_DIR: db.path }
  const server = await startServer(env)
  return {
    server,
    env,
    async cleanup() {
      await server.stop()
      db.remove()
      const pool = new pg.Pool({ connectionString: postgresUrl })
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      await pool.end()
    },
  }
}

/**
 * The spec's flow, word for word: sign in, API keys → Create key → label → Copy,
 * call the API, reload, rotate, revoke, billing, sign out.
 */
function describeKeyFlow(name: string, start: () => Promise<Started>, screenshots: boolean) {
  describe.skipIf(!browserAvailable)(`the spec's key flow in a browser (${name})`, { timeout: 180_000 }, () => {
    let started: Started
    let browser: Browser
    let context: BrowserContext
    let page: Page
    const dialogs: string[] = []

    beforeAll(async () => {
      started = await start()
      browser = await launchBrowser()
      context = await browser.context({ viewport: { width: 1280, height: 860 } })
      await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: started.server.url })
      page = await context.newPage()
      page.on('dialog', (dialog) => {
        dialogs.push(dialog.message())
        void dialog.accept()
      })
    }, 120_000)
    afterAll(async () => {
      await browser?.close()
      await started?.cleanup()
    })

    const shoot = async (file: string, on: Page = page) => {
      if (!screenshots) return
      mkdirSync(SCREENSHOTS, { recursive: true })
      await on.screenshot({ path: join(SCREENSHOTS, file), fullPage: true })
    }

    it('signs in, mints, rotates and revokes a key, starts a trial, and signs out', async () => {
      const { server, env } = started
      const admin = demoMember(server)
      expect(server.stderr()).toContain(`Dashboard: ${server.url}/sign-in`)

      await page.goto(`${server.url}/sign-in`)
      await shoot('sign-in.png')
      await signIn(page, server, admin)
      expect(
        await page
          .getByRole('navigation', { name: 'Dashboard' })
          .getByRole('link', { name: 'Overview' })
          .getAttribute('aria-current'),
      ).toBe('page')
      await shown(page.getByText('acme', { exact: true }).first())
      await shown(page.getByText(`curl ${server.url}/me/tenant`))
      await shoot('overview.png')

      // API keys → Create key → Label → Copy.
      const first = await createKeyInBrowser(page, 'production-agent')
      await shoot('key-created.png')
      const tenant = await apiGet(server, '/me/tenant', first.secret)
      expect(tenant.status).toBe(200)
      expect(await tenant.json()).toMatchObject({
        tenantSlug: 'acme',
        tier: 'starter',
        connectionName: 'production-warehouse',
      })

      // Reload: the secret is gone; the ID and label are listed.
      await page.reload()
      await shown(page.getByRole('heading', { level: 1, name: 'API keys' }))
      expect(await page.content()).not.toContain(first.secret)
      await shown(rowOf(page, first.keyId).getByRole('cell', { name: 'production-agent' }))

      // Rotation: a second key with the same label; both work.
      const second = await createKeyInBrowser(page, 'production-agent')
      expect(second.keyId).not.toBe(first.keyId)
      // Leaving the page and going Back does not show the secret again.
      await nav(page, 'Usage')
      await page.goBack().catch(() => null)
      expect(await settledContent(page)).not.toContain(second.secret)
      await page.goto(`${started.server.url}/api-keys`)
      const before = await apiGet(server, '/me/tenant', first.secret)
      expect(before.status).toBe(200)
      const countBefore = hourRemaining(before)
      expect((await apiGet(server, '/me/tenant', second.secret)).status).toBe(200)

      // Revoke the first, from the same page, behind a confirmation that names it.
      await nav(page, 'API keys')
      await rowOf(page, first.keyId).getByRole('button', { name: 'Revoke' }).click()
      await shown(page.getByRole('status').filter({ hasText: `Key ${first.keyId} revoked.` }))
      expect(dialogs.at(-1)).toContain(`Revoke key ${first.keyId} (production-agent)?`)
      expect(await rowOf(page, first.keyId).count()).toBe(0)
      expect(await rowOf(page, second.keyId).count()).toBe(1)
      await shoot('api-keys.png')
      expect((await apiGet(server, '/me/tenant', first.secret)).status).toBe(401)
      const after = await apiGet(server, '/me/tenant', second.secret)
      expect(after.status).toBe(200)
      // The tenant's counts carried on across the keys: one more request than before, none reset.
      expect(hourRemaining(after)).toBe(countBefore - 2)

      // Usage: the hour as the limiter counts it, read without spending.
      await nav(page, 'Usage')
      const hourBar = page.getByRole('progressbar', { name: 'This hour' })
      await shown(hourBar)
      const used = 1000 - hourRemaining(after)
      expect(await hourBar.getAttribute('value')).toBe(String(used))
      await page.reload()
      await shown(hourBar)
      expect(await hourBar.getAttribute('value')).toBe(String(used))
      expect(await rowOf(page, second.keyId).count()).toBe(1)
      await shoot('usage.png')
      expect(hourRemaining(await apiGet(server, '/me/tenant', second.secret))).toBe(hourRemaining(after) - 1)

      // Activity: the key events, by whom, never a secret.
      await nav(page, 'Activity')
      await shown(page.getByRole('heading', { level: 1, name: 'Activity' }))
      expect(
        await page.getByRole('row').filter({ hasText: 'Key revoked' }).filter({ hasText: first.keyId }).count(),
      ).toBe(1)
      expect(
        await page.getByRole('row').filter({ hasText: 'Key created' }).filter({ hasText: admin.email }).count(),
      ).toBe(2)
      expect(await page.getByRole('row').filter({ hasText: 'Signed in' }).count()).toBeGreaterThan(0)
      const activityHtml = await page.content()
      expect(activityHtml).not.toContain(first.secret.slice(21))
      expect(activityHtml).not.toContain(second.secret.slice(21))
      await shoot('activity.png')

      // Billing: a tenant without a subscription starts its trial; its 402 becomes 200.
      await nav(page, 'Billing')
      await shown(page.getByRole('heading', { level: 1, name: 'Billing' }))
      await shown(page.getByText('Your trial is running.'))
      await cliJson(['tenants', 'create', '--slug', 'initech', '--tier', 'team', '--subscription', 'none'], env)
      const initechPassword = 'initech-admin-password-1'
      const added = await cliWithInput(
        [
          'members',
          'add',
          '--tenant',
          'initech',
          '--email',
          'ops@initech.example',
          '--role',
          'admin',
          '--password-stdin',
        ],
        env,
        `${initechPassword}\n`,
      )
      expect(added).toMatchObject({ code: 0 })
      expect(added.stdout).not.toContain(initechPassword)
      const { secret: initechKey } = await cliJson<{ secret: string }>(
        ['keys', 'create', '--tenant', 'initech', '--label', 'ops'],
        env,
      )
      const refused = await apiGet(server, '/me/tenant', initechKey)
      expect(refused.status).toBe(402)
      expect(((await refused.json()) as { message: string }).message).toContain(
        'Visit /billing to start your 14-day trial.',
      )

      const other = await browser.context({ viewport: { width: 1280, height: 860 } })
      const otherPage = await other.newPage()
      await signIn(otherPage, server, { email: 'ops@initech.example', password: initechPassword })
      await otherPage.goto(`${server.url}/billing`)
      await shown(otherPage.getByText('No subscription'))
      await shoot('billing.png', otherPage)
      await otherPage.getByRole('button', { name: 'Start trial' }).click()
      await shown(otherPage.getByRole('status').filter({ hasText: 'Your 14-day trial has started.' }))
      expect(await otherPage.getByRole('button', { name: 'Start trial' }).count()).toBe(0)
      await shown(otherPage.getByText('Trial', { exact: true }))
      const opened = await apiGet(server, '/me/tenant', initechKey)
      expect(opened.status).toBe(200)

      // Sign out; Back shows nothing private.
      await nav(page, 'API keys')
      await page.getByRole('button', { name: 'Sign out' }).click()
      await shown(page.getByRole('status').filter({ hasText: 'You are signed out.' }))
      await page.goBack()
      await shown(page.getByRole('heading', { level: 1, name: 'Sign in' }))
      expect(await page.content()).not.toContain(second.keyId)

      // Nothing secret went to the logs.
      expect(server.stdout()).not.toContain(first.secret.slice(21))
      expect(server.stdout()).not.toContain(second.secret.slice(21))
      expect(server.stdout()).not.toContain(admin.password)
    })
  })
}

describeKeyFlow('SQLite', () => startOnSqlite(), true)
describe.skipIf(postgresUrl === undefined)('on PostgreSQL', () => {
  describeKeyFlow('PostgreSQL', () => startOnPostgres(), false)
})

/** The session cookie and a form's CSRF token from a signed-in page, for requests made outside the browser. */
async function sessionOf(context: BrowserContext, page: Page): Promise<{ cookie: string; csrf: string }> {
  const cookies = await context.cookies()
  const session = cookies.find((c) => c.name === 'saiku_session')
  if (session === undefined) throw new Error('not signed in')
  return {
    cookie: `saiku_session=${session.value}`,
    csrf: await page.locator('input[name="_csrf"]').first().inputValue(),
  }
}

async function postForm(
  server: RunningServer,
  path: string,
  fields: Record<string, string>,
  headers: Record<string, string>,
): Promise<Response> {
  return fetch(`${server.url}${path}`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(fields).toString(),
  })
}

describe.skipIf(!browserAvailable)('hostile cases, in the browser and over HTTP', { timeout: 120_000 }, () => {
  let started: Started
  let browser: Browser
  let admin: Credentials
  const viewer = { email: 'viewer@acme.example', password: 'viewer-password-123' }
  const dialogs: string[] = []
  let adminContext: BrowserContext
  let adminPage: Page

  beforeAll(async () => {
    started = await startOnSqlite()
    admin = demoMember(started.server)
    const added = await cliWithInput(
      ['members', 'add', '--tenant', 'acme', '--email', viewer.email, '--role', 'viewer', '--password-stdin'],
      started.env,
      viewer.password,
    )
    expect(added.code).toBe(0)
    browser = await launchBrowser()
    adminContext = await browser.context({ viewport: { width: 1280, height: 860 } })
    adminPage = await adminContext.newPage()
    adminPage.on('dialog', (dialog) => {
      dialogs.push(dialog.message())
      void dialog.accept()
    })
    await signIn(adminPage, started.server, admin)
  }, 120_000)
  afterAll(async () => {
    await browser?.close()
    await started?.cleanup()
  })

  it('shows an XSS label as text on every page, and runs no script from it', async () => {
    const { server } = started
    const { keyId } = await createKeyInBrowser(adminPage, XSS_LABEL, { copy: false })
    await shown(adminPage.getByText(XSS_LABEL, { exact: true }))
    await nav(adminPage, 'API keys')
    expect(await rowOf(adminPage, keyId).getByRole('cell', { name: XSS_LABEL, exact: true }).textContent()).toBe(
      XSS_LABEL,
    )
    expect(await adminPage.locator('img').count()).toBe(0)
    await nav(adminPage, 'Usage')
    expect(await adminPage.locator('img').count()).toBe(0)
    expect(dialogs).toEqual([])
    const html = await (
      await fetch(`${server.url}/api-keys`, { headers: { cookie: (await sessionOf(adminContext, adminPage)).cookie } })
    ).text()
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;')
    expect(html).not.toContain('<img')
  })

  it('sets a strict CSP and the usual headers with helmet, and serves no inline script', async () => {
    const res = await fetch(`${started.server.url}/sign-in`)
    const csp = res.headers.get('content-security-policy')!
    expect(csp).toContain("script-src 'self'")
    expect(csp).toContain("frame-ancestors 'none'")
    expect(csp).toContain("default-src 'self'")
    expect(res.headers.get('x-content-type-options')).toBe('nosniff')
    expect(res.headers.get('x-frame-options')).toBe('DENY')
    expect(res.headers.get('cache-control')).toBe('no-store')
    const html = await res.text()
    expect(html.match(/<script\b[^>]*>/g)).toEqual(['<script src="/assets/app.js" defer>'])
    expect(html).not.toMatch(/\son[a-z]+=/i)
    expect(html).not.toMatch(/\sstyle=/i)
  })

  it('refuses a cross-site form POST with 403 and changes nothing', async () => {
    const { server } = started
    await nav(adminPage, 'API keys')
    const { keyId, secret } = await createKeyInBrowser(adminPage, 'target', { copy: false })
    // An attacker's page on another origin (localhost is another site than 127.0.0.1).
    const evil: Server = createServer((_req, res) => {
      res.setHeader('content-type', 'text/html')
      res.end(
        `<form method="post" action="${server.url}/api-keys/${keyId}/revoke"><input type="hidden" name="confirm" value="yes"><button>Win a prize</button></form>`,
      )
    })
    evil.listen(0, '127.0.0.1')
    await once(evil, 'listening')
    const evilUrl = `http://localhost:${(evil.address() as { port: number }).port}/`
    try {
      const page = await adminContext.newPage()
      await page.goto(evilUrl)
      const answer = page.waitForResponse((r) => r.url().endsWith(`/api-keys/${keyId}/revoke`))
      await page.getByRole('button', { name: 'Win a prize' }).click()
      expect((await answer).status()).toBe(403)
      await shown(page.getByRole('heading', { name: 'Request refused' }))
      await page.close()
    } finally {
      evil.close()
    }
    // Over HTTP with the real session: a foreign Origin is refused even with the right token; no token is refused too.
    const { cookie, csrf } = await sessionOf(adminContext, adminPage)
    const foreign = await postForm(
      server,
      `/api-keys/${keyId}/revoke`,
      { _csrf: csrf, confirm: 'yes' },
      { cookie, origin: 'http://evil.example' },
    )
    expect(foreign.status).toBe(403)
    const tokenless = await postForm(
      server,
      `/api-keys/${keyId}/revoke`,
      { confirm: 'yes' },
      { cookie, origin: server.url },
    )
    expect(tokenless.status).toBe(403)
    const wrongToken = await postForm(
      server,
      `/api-keys/${keyId}/revoke`,
      { _csrf: 'x'.repeat(43), confirm: 'yes' },
      { cookie, origin: server.url },
    )
    expect(wrongToken.status).toBe(403)
    expect((await apiGet(server, '/me/tenant', secret)).status).toBe(200)
    await nav(adminPage, 'API keys')
    expect(await rowOf(adminPage, keyId).count()).toBe(1)
    // And a sign-in form posted without the sign-in page's cookie.
    expect(
      (
        await postForm(
          server,
          '/sign-in',
          { _csrf: 'abc', email: admin.email, password: admin.password },
          { origin: server.url },
        )
      ).status,
    ).toBe(403)
  })

  it('answers another tenant’s key ID in a revoke exactly like a missing one, and leaves that key alone', async () => {
    const { server, env } = started
    await cliJson(['tenants', 'create', '--slug', 'globex', '--tier', 'team'], env)
    const { keyId, secret } = await cliJson<{ keyId: string; secret: string }>(
      ['keys', 'create', '--tenant', 'globex', '--label', 'theirs'],
      env,
    )
    await nav(adminPage, 'API keys')
    const { cookie, csrf } = await sessionOf(adminContext, adminPage)
    const headers = { cookie, origin: server.url }
    const theirs = await postForm(server, `/api-keys/${keyId}/revoke`, { _csrf: csrf, confirm: 'yes' }, headers)
    const missing = await postForm(server, '/api-keys/AAAAAAAAAAAA/revoke', { _csrf: csrf, confirm: 'yes' }, headers)
    expect(theirs.status).toBe(404)
    expect(missing.status).toBe(404)
    expect(await theirs.text()).toBe(await missing.text())
    expect((await apiGet(server, '/me/tenant', secret)).status).toBe(200)
    // Nor is it listed.
    expect(await adminPage.getByText(keyId).count()).toBe(0)
  })

  it('lets a viewer see keys but neither create nor revoke them (403)', async () => {
    const { server } = started
    const context = await browser.context()
    const page = await context.newPage()
    await signIn(page, server, viewer)
    await nav(page, 'API keys')
    const firstRow = page.getByRole('row').nth(1)
    const keyId = (await firstRow.getByRole('cell').first().textContent())!.trim()
    expect(await page.getByRole('button', { name: 'Revoke' }).count()).toBe(0)
    expect(await page.getByRole('button', { name: 'Create key' }).count()).toBe(0)
    const { cookie, csrf } = await sessionOf(context, page)
    const forged = await postForm(
      server,
      `/api-keys/${keyId}/revoke`,
      { _csrf: csrf, confirm: 'yes' },
      { cookie, origin: server.url },
    )
    expect(forged.status).toBe(403)
    expect(await forged.text()).toContain('only an admin can change them')
    const create = await postForm(server, '/api-keys', { _csrf: csrf, label: 'sneaky' }, { cookie, origin: server.url })
    expect(create.status).toBe(403)
    await page.goto(`${server.url}/api-keys/new`)
    await shown(page.getByRole('heading', { name: 'Not allowed' }))
    await nav(page, 'API keys')
    expect(await rowOf(page, keyId).count()).toBe(1)
    expect(await page.getByText('sneaky').count()).toBe(0)
  })

  it('keeps the API for API keys only: a session grants nothing on /me/*, a key nothing on the dashboard', async () => {
    const { server } = started
    const { cookie } = await sessionOf(adminContext, adminPage)
    const withCookie = await fetch(`${server.url}/me/tenant`, { headers: { cookie } })
    expect(withCookie.status).toBe(401)
    expect(await withCookie.json()).toEqual({ error: 'unauthorized', message: 'API key missing or invalid.' })
    const { secret } = await cliJson<{ secret: string }>(
      ['keys', 'create', '--tenant', 'acme', '--label', 'api-only'],
      started.env,
    )
    const withKey = await fetch(`${server.url}/api-keys`, {
      headers: { authorization: `Bearer ${secret}` },
      redirect: 'manual',
    })
    expect(withKey.status).toBe(303)
    expect(withKey.headers.get('location')).toBe('/sign-in?next=%2Fapi-keys')
  })

  it('refuses too many wrong passwords with 429, the same message for an unknown email', async () => {
    const { server } = started
    const context = await browser.context()
    const page = await context.newPage()
    const target = 'locked@acme.example'
    await cliWithInput(
      ['members', 'add', '--tenant', 'acme', '--email', target, '--role', 'viewer', '--password-stdin'],
      started.env,
      'the-right-password-1',
    )
    const attempt = async (email: string, password: string) => {
      await page.goto(`${server.url}/sign-in`)
      await page.getByLabel('Email').fill(email)
      await page.getByLabel('Password').fill(password)
      const answer = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/sign-in'))
      await page.getByRole('button', { name: 'Sign in' }).click()
      const response = await answer
      await shown(page.getByRole('heading', { level: 1 }))
      return {
        status: response.status(),
        headers: response.headers(),
        alert: await page
          .getByRole('alert')
          .textContent()
          .catch(() => null),
      }
    }
    const unknown = await attempt('nobody@acme.example', 'whatever-password')
    expect(unknown).toMatchObject({ status: 401, alert: 'Incorrect email or password.' })
    for (let i = 0; i < 5; i++) {
      expect(await attempt(target, `wrong-password-${i}`)).toMatchObject({
        status: 401,
        alert: 'Incorrect email or password.',
      })
    }
    const refused = await attempt(target, 'the-right-password-1')
    expect(refused.status).toBe(429)
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1)
    // Said in minutes, as a person waits; the header keeps the seconds.
    expect(refused.alert).toBe('Too many failed sign-in attempts. Try again in 1 minute.')
    // The activity log shows the refusals, against the account.
    await nav(adminPage, 'Activity')
    expect(
      await adminPage.getByRole('row').filter({ hasText: 'Sign-in refused' }).filter({ hasText: target }).count(),
    ).toBe(5)
  })

  it('signs in from either of two sign-in tabs in one browser', async () => {
    const { server } = started
    const context = await browser.context()
    const first = await context.newPage()
    await first.goto(`${server.url}/sign-in`)
    const second = await context.newPage()
    await second.goto(`${server.url}/sign-in`)
    // The first tab's form, rendered before the second's, still works.
    await first.getByLabel('Email').fill(viewer.email)
    await first.getByLabel('Password').fill(viewer.password)
    await first.getByRole('button', { name: 'Sign in' }).click()
    await shown(first.getByRole('heading', { level: 1, name: 'Overview' }))
    await context.close()
  })

  it('ends a member’s sessions when the CLI resets their password or removes them', async () => {
    const { server, env } = started
    const email = 'leaver@acme.example'
    await cliWithInput(
      ['members', 'add', '--tenant', 'acme', '--email', email, '--role', 'admin', '--password-stdin'],
      env,
      'leaver-password-123',
    )
    const context = await browser.context()
    const page = await context.newPage()
    await signIn(page, server, { email, password: 'leaver-password-123' })
    const reset = await cliWithInput(
      ['members', 'reset-password', '--email', email, '--password-stdin'],
      env,
      'leaver-password-456',
    )
    expect(reset.code).toBe(0)
    await page.reload()
    await shown(page.getByRole('heading', { level: 1, name: 'Sign in' }))
    await signIn(page, server, { email, password: 'leaver-password-456' })
    const removed = await cliJson<{ removed: boolean }>(['members', 'remove', '--email', email], env)
    expect(removed.removed).toBe(true)
    await page.reload()
    await shown(page.getByRole('heading', { level: 1, name: 'Sign in' }))
    const listed = await cliJson<{ email: string }[]>(['members', 'list', '--tenant', 'acme'], env)
    expect(listed.map((m) => m.email)).not.toContain(email)
    const activity = await cliJson<{ action: string; target: string | null; actorType: string }[]>(
      ['activity', '--tenant', 'acme'],
      env,
    )
    expect(activity.filter((e) => e.target?.startsWith(email)).map((e) => e.action)).toEqual(
      expect.arrayContaining(['member.added', 'member.password_reset', 'member.removed']),
    )
  })

  it('works with JavaScript off: create, read the secret, and revoke through a confirmation page', async () => {
    const { server } = started
    const context = await browser.context({ javaScriptEnabled: false })
    const page = await context.newPage()
    await signIn(page, server, admin)
    const { keyId, secret } = await createKeyInBrowser(page, 'no-js', { copy: false })
    expect(await page.getByRole('button', { name: 'Copy' }).count()).toBe(0)
    expect((await apiGet(server, '/me/tenant', secret)).status).toBe(200)
    await nav(page, 'API keys')
    await rowOf(page, keyId).getByRole('button', { name: 'Revoke' }).click()
    await shown(page.getByRole('heading', { level: 1, name: `Revoke key ${keyId}?` }))
    await page.getByRole('button', { name: 'Revoke key' }).click()
    await shown(page.getByRole('status').filter({ hasText: `Key ${keyId} revoked.` }))
    expect((await apiGet(server, '/me/tenant', secret)).status).toBe(401)
  })

  it('records what API keys do through the API in the activity log, with the key ID and address', async () => {
    const { server, env } = started
    const { secret, keyId } = await cliJson<{ secret: string; keyId: string }>(
      ['keys', 'create', '--tenant', 'acme', '--label', 'automation'],
      env,
    )
    const minted = await fetch(`${server.url}/me/api-keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ label: 'made-by-api' }),
    })
    expect(minted.status).toBe(201)
    const made = (await minted.json()) as { keyId: string; secret: string }
    expect(
      (
        await fetch(`${server.url}/me/api-keys/${made.keyId}`, {
          method: 'DELETE',
          headers: { authorization: `Bearer ${secret}` },
        })
      ).status,
    ).toBe(204)
    const events = await cliJson<
      { action: string; actorType: string; actor: string; target: string | null; ip: string | null }[]
    >(['activity', '--tenant', 'acme'], env)
    expect(events.slice(0, 3)).toEqual([
      {
        at: expect.any(String),
        action: 'key.revoked',
        actorType: 'api_key',
        actor: keyId,
        target: made.keyId,
        ip: expect.stringContaining('127.0.0.1'),
      },
      {
        at: expect.any(String),
        action: 'key.created',
        actorType: 'api_key',
        actor: keyId,
        target: made.keyId,
        ip: expect.stringContaining('127.0.0.1'),
      },
      { at: expect.any(String), action: 'key.created', actorType: 'cli', actor: 'cli', target: keyId, ip: null },
    ])
    await nav(adminPage, 'Activity')
    expect(
      await adminPage
        .getByRole('row')
        .filter({ hasText: `API key ${keyId}` })
        .count(),
    ).toBe(2)
    expect(await adminPage.content()).not.toContain(made.secret.slice(21))
    const human = await cliWithInput(['activity', '--tenant', 'acme', '--limit', '2'], env, '')
    expect(human.stdout.trim().split('\n')).toHaveLength(2)
    expect(human.stdout).toContain(`key.revoked\tkey ${keyId}\t${made.keyId}`)
  })

  it('can be used from the keyboard alone, with a visible focus', async () => {
    const context = await browser.context({ viewport: { width: 1280, height: 860 } })
    const page = await context.newPage()
    await signIn(page, started.server, admin)
    await page.goto(`${started.server.url}/api-keys`)
    const focused = () =>
      page.evaluate<{ text: string; ring: string }>(
        '({ text: document.activeElement.textContent.trim(), ring: getComputedStyle(document.activeElement).boxShadow })',
      )
    let current = { text: '', ring: '' }
    for (let i = 0; i < 30 && current.text !== 'Create key'; i++) {
      await page.keyboard.press('Tab')
      current = await focused()
    }
    expect(current.text).toBe('Create key')
    expect(current.ring).not.toBe('none')
    await page.keyboard.press('Enter')
    await shown(page.getByRole('heading', { level: 1, name: 'Create key' }))
    await page.keyboard.press('Tab')
    while ((await page.evaluate<string>('document.activeElement.id')) !== 'label') await page.keyboard.press('Tab')
    await page.keyboard.type('typed-by-keyboard')
    await page.keyboard.press('Enter')
    await shown(page.getByRole('heading', { name: 'Copy your secret key now' }))
    expect(await page.getByText('typed-by-keyboard').count()).toBe(1)
  })

  it('fits a phone’s width', async () => {
    const context = await browser.context({
      viewport: { width: 390, height: 844 },
      isMobile: true,
      hasTouch: true,
      deviceScaleFactor: 2,
    })
    const page = await context.newPage()
    await signIn(page, started.server, admin)
    // On a phone the navigation is folded into the Menu.
    await page.getByText('Menu', { exact: true }).click()
    await nav(page, 'API keys')
    await shown(page.getByRole('button', { name: 'Create key' }))
    mkdirSync(SCREENSHOTS, { recursive: true })
    await page.screenshot({ path: join(SCREENSHOTS, 'api-keys-phone.png'), fullPage: true })
    const overflow = await page.evaluate<number>(
      'document.documentElement.scrollWidth - document.documentElement.clientWidth',
    )
    expect(overflow).toBeLessThanOrEqual(0)
  })
})

describe.skipIf(!browserAvailable)(
  'session settings: timeouts and cookies behind a proxy',
  { timeout: 120_000 },
  () => {
    let started: Started
    let browser: Browser

    beforeAll(async () => {
      started = await startOnSqlite({
        SESSION_IDLE_TIMEOUT_SECONDS: '4',
        SESSION_ABSOLUTE_TIMEOUT_SECONDS: '8',
        TRUST_PROXY: 'loopback',
      })
      browser = await launchBrowser()
    }, 120_000)
    afterAll(async () => {
      await browser?.close()
      await started?.cleanup()
    })

    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

    it('marks cookies Secure with the __Host- prefix behind a trusted proxy that terminates HTTPS, and only then', async () => {
      const { server } = started
      const plain = await fetch(`${server.url}/sign-in`)
      expect(plain.headers.get('set-cookie')).toMatch(
        /^saiku_signin=[\w-]+; Max-Age=3600; Path=\/; HttpOnly; SameSite=Lax$/,
      )
      const proxied = await fetch(`${server.url}/sign-in`, { headers: { 'x-forwarded-proto': 'https' } })
      expect(proxied.headers.get('set-cookie')).toMatch(
        /^__Host-saiku_signin=[\w-]+; Max-Age=3600; Path=\/; HttpOnly; Secure; SameSite=Lax$/,
      )
    })

    it('takes the host a trusted proxy forwards (X-Forwarded-Host) as the dashboard’s, for forms and cookies', async () => {
      const { server } = started
      const admin = demoMember(server)
      // The proxy rewrote Host to the app's internal address, and says what the browser asked for.
      const headers = {
        host: 'saiku-app.internal:3000',
        'x-forwarded-host': 'dash.example.com',
        'x-forwarded-proto': 'https',
      }
      const { jar, response } = await signInOverHttp(server, admin, { headers, origin: 'https://dash.example.com' })
      expect(response.status).toBe(303)
      expect(response.headers.get('location')).toBe('/')
      expect(jar.has('__Host-saiku_session')).toBe(true)
      // The forwarded host is the one compared: a form from the internal address is another origin.
      const { response: mismatch } = await signInOverHttp(server, admin, {
        headers,
        origin: 'https://saiku-app.internal:3000',
      })
      expect(mismatch.status).toBe(403)
    })

    it('refuses a malformed PUBLIC_ORIGIN at start-up with one line', async () => {
      const db = tempDatabase()
      await expect(
        startServer({
          DATABASE_URL: db.databaseUrl,
          REDIS_URL: '',
          SAIKU_DATA_DIR: db.path,
          PUBLIC_ORIGIN: 'https://dash.example.com/app',
        }),
      ).rejects.toThrow(
        'saiku: PUBLIC_ORIGIN: expected a scheme and host such as https://saiku.example.com (no path), got "https://dash.example.com/app"\n',
      )
      db.remove()
    })

    it('takes PUBLIC_ORIGIN as the only origin forms may come from, and makes cookies Secure when it is https', async () => {
      const public_ = await startOnSqlite({ PUBLIC_ORIGIN: 'https://dash.example.com' })
      try {
        const { server } = public_
        const admin = demoMember(server)
        // No TRUST_PROXY: the proxy's headers are not believed, the setting says what the browser sees.
        const { jar, response } = await signInOverHttp(server, admin, { origin: 'https://dash.example.com' })
        expect(response.status).toBe(303)
        expect(jar.has('__Host-saiku_session')).toBe(true)
        expect(response.headers.getSetCookie().join('\n')).toMatch(/^__Host-saiku_session=[\w-]+;.* Secure;/m)
        const overview = await pageOf(server, jar, '/')
        expect(overview.html).toContain('curl https://dash.example.com/me/tenant')
        const { response: direct } = await signInOverHttp(server, admin, { origin: server.url })
        expect(direct.status).toBe(403)
        await waitFor(() => server.logs.some((line) => line.msg === 'refused form: origin'), 5_000)
        expect(server.logs.find((line) => line.msg === 'refused form: origin')).toMatchObject({
          origin: server.url,
          expected: 'https://dash.example.com',
          publicOrigin: 'https://dash.example.com',
        })
      } finally {
        await public_.cleanup()
      }
    })

    it('refuses bad session settings at start-up, naming the variable', async () => {
      const db = tempDatabase()
      await expect(
        startServer({
          DATABASE_URL: db.databaseUrl,
          REDIS_URL: '',
          SAIKU_DATA_DIR: db.path,
          SESSION_IDLE_TIMEOUT_SECONDS: '-5',
        }),
      ).rejects.toThrow('SESSION_IDLE_TIMEOUT_SECONDS: expected a positive number of seconds, got "-5"')
      db.remove()
    })

    it('ends an idle session, and a busy one at the absolute timeout', async () => {
      const { server } = started
      const admin = demoMember(server)
      const context = await browser.context()
      const page = await context.newPage()
      await signIn(page, server, admin)
      await sleep(4_500)
      await page.goto(`${server.url}/api-keys`)
      await shown(page.getByRole('status').filter({ hasText: 'Your session expired. Sign in again.' }))
      expect(new URL(page.url()).pathname).toBe('/sign-in')

      // Used every second, it still ends eight seconds after sign-in.
      const signedInAt = Date.now() // before the sign-in: the session cannot be older than this
      await signIn(page, server, admin)
      let expiredAfterMs = 0
      while (Date.now() - signedInAt < 30_000) {
        await sleep(1_000)
        await page.goto(`${server.url}/usage`)
        if (new URL(page.url()).pathname === '/sign-in') {
          expiredAfterMs = Date.now() - signedInAt
          break
        }
      }
      expect(expiredAfterMs).toBeGreaterThanOrEqual(8_000)
    })
  },
)

/** Cookies as a browser keeps them, for requests made outside one: name=value from each Set-Cookie. */
function cookieJar() {
  const cookies = new Map<string, string>()
  return {
    take(response: Response): void {
      for (const line of response.headers.getSetCookie()) {
        const [pair] = line.split(';')
        const at = pair!.indexOf('=')
        const [name, value] = [pair!.slice(0, at), pair!.slice(at + 1)]
        if (value === '' || /Max-Age=0/i.test(line)) cookies.delete(name)
        else cookies.set(name, value)
      }
    },
    header: () => [...cookies].map(([name, value]) => `${name}=${value}`).join('; '),
    has: (name: string) => cookies.has(name),
  }
}

type Jar = ReturnType<typeof cookieJar>

/** Signs in over HTTP the way the form does; the jar then holds the session. */
async function signInOverHttp(
  server: RunningServer,
  who: Credentials,
  options: { headers?: Record<string, string>; origin?: string; next?: string } = {},
): Promise<{ jar: Jar; response: Response }> {
  const jar = cookieJar()
  const form = await fetch(`${server.url}/sign-in`, { headers: options.headers ?? {} })
  jar.take(form)
  const token = (await form.text()).match(/name="_csrf" value="([^"]+)"/)![1]!
  const query = options.next === undefined ? '' : `?next=${encodeURIComponent(options.next)}`
  const response = await postForm(
    server,
    `/sign-in${query}`,
    { _csrf: token, email: who.email, password: who.password },
    { ...options.headers, cookie: jar.header(), origin: options.origin ?? server.url },
  )
  jar.take(response)
  return { jar, response }
}

async function pageOf(server: RunningServer, jar: Jar, path: string): Promise<{ status: number; html: string }> {
  const response = await fetch(`${server.url}${path}`, { headers: { cookie: jar.header() }, redirect: 'manual' })
  return { status: response.status, html: await response.text() }
}

/** The notice a page shows, if any. */
const noticeOf = (html: string): string | null =>
  html.match(/<p class="notice" role="status">([^<]*)<\/p>/)?.[1]?.replaceAll('&#39;', "'") ?? null

/** A Create key form's hidden fields, from GET /api-keys/new. */
async function createKeyForm(server: RunningServer, jar: Jar): Promise<{ _csrf: string; _form: string }> {
  const { html } = await pageOf(server, jar, '/api-keys/new')
  return {
    _csrf: html.match(/name="_csrf" value="([^"]+)"/)![1]!,
    _form: html.match(/name="_form" value="([\w-]+)"/)![1]!,
  }
}

const SPENT_FORM =
  'That Create key form was already submitted or is out of date, so this submission created no key. ' +
  'If a key was created from it before, it is in the list below; its secret is shown only once.'

describe.skipIf(!browserAvailable)('forms, notices and links (issue 23)', { timeout: 120_000 }, () => {
  let started: Started
  let browser: Browser
  let admin: Credentials

  beforeAll(async () => {
    started = await startOnSqlite()
    admin = demoMember(started.server)
    browser = await launchBrowser()
  }, 120_000)
  afterAll(async () => {
    await browser?.close()
    await started?.cleanup()
  })

  it('creates one key from each of two Create key forms open at once; a spent form creates nothing and claims nothing', async () => {
    const { server } = started
    const context = await browser.context()
    const first = await context.newPage()
    await signIn(first, server, admin)
    const second = await context.newPage()
    await first.goto(`${server.url}/api-keys/new`)
    await second.goto(`${server.url}/api-keys/new`)
    const firstNonce = await first.locator('input[name="_form"]').inputValue()
    // The form rendered first is submitted first, then the other.
    for (const [page, label] of [
      [first, 'first-tab'],
      [second, 'second-tab'],
    ] as const) {
      await page.getByLabel('Label').fill(label)
      await page.getByRole('button', { name: 'Create key' }).click()
      await shown(page.getByRole('heading', { name: 'Copy your secret key now' }))
      expect(await page.getByRole('textbox', { name: 'Secret key' }).inputValue()).toMatch(/^sk_live_/)
    }
    await first.goto(`${server.url}/api-keys`)
    expect(await first.getByRole('cell', { name: 'first-tab', exact: true }).count()).toBe(1)
    expect(await first.getByRole('cell', { name: 'second-tab', exact: true }).count()).toBe(1)

    // The first form again (a resubmission): nothing is created, and the notice says only that.
    const { cookie, csrf } = await sessionOf(context, first)
    const again = await postForm(
      server,
      '/api-keys',
      { _csrf: csrf, _form: firstNonce, label: 'resubmitted' },
      { cookie, origin: server.url },
    )
    expect(again.status).toBe(303)
    expect(again.headers.get('location')).toBe('/api-keys')
    await first.goto(`${server.url}/api-keys`)
    await shown(first.getByRole('status').filter({ hasText: SPENT_FORM }))
    expect(await first.getByText('resubmitted').count()).toBe(0)
    // Shown once.
    await first.reload()
    await shown(first.getByRole('heading', { level: 1, name: 'API keys' }))
    expect(await first.getByRole('status').count()).toBe(0)
    await context.close()
  })

  it('keeps the ten newest Create key forms of a session good for one key each, and forgets older ones', async () => {
    const { server } = started
    const { jar } = await signInOverHttp(server, admin)
    const forms = []
    for (let i = 0; i < 11; i++) forms.push(await createKeyForm(server, jar))
    const submit = (form: { _csrf: string; _form: string }, label: string) =>
      postForm(server, '/api-keys', { ...form, label }, { cookie: jar.header(), origin: server.url })
    const oldest = await submit(forms[0]!, 'bounded-0')
    expect(oldest.status).toBe(303)
    expect(noticeOf((await pageOf(server, jar, '/api-keys')).html)).toBe(SPENT_FORM)
    for (let i = 1; i < 11; i++) expect((await submit(forms[i]!, `bounded-${i}`)).status, `form ${i}`).toBe(201)
    for (let i = 1; i < 11; i++) expect((await submit(forms[i]!, `twice-${i}`)).status, `form ${i} again`).toBe(303)
    const { html } = await pageOf(server, jar, '/api-keys')
    expect(html.match(/>bounded-\d+</g)).toHaveLength(10)
    expect(html).not.toContain('bounded-0<')
    expect(html).not.toContain('twice-')
  })

  it('shows a success notice once, from the session: a query string announces nothing', async () => {
    const { server, env } = started
    const { jar } = await signInOverHttp(server, admin)
    expect(noticeOf((await pageOf(server, jar, '/api-keys?revoked=AAAAAAAAAAAA')).html)).toBeNull()
    expect(noticeOf((await pageOf(server, jar, '/api-keys?used=1')).html)).toBeNull()
    expect(noticeOf((await pageOf(server, jar, '/billing?trial=started')).html)).toBeNull()

    const { keyId } = await cliJson<{ keyId: string }>(['keys', 'create', '--tenant', 'acme', '--label', 'gone'], env)
    const { _csrf } = await createKeyForm(server, jar)
    const revoked = await postForm(
      server,
      `/api-keys/${keyId}/revoke`,
      { _csrf, confirm: 'yes' },
      { cookie: jar.header(), origin: server.url },
    )
    expect(revoked.status).toBe(303)
    expect(revoked.headers.get('location')).toBe('/api-keys')
    expect(noticeOf((await pageOf(server, jar, '/api-keys')).html)).toBe(`Key ${keyId} revoked.`)
    expect(noticeOf((await pageOf(server, jar, '/api-keys')).html)).toBeNull()
    // Another session of the same member is told nothing.
    const { jar: other } = await signInOverHttp(server, admin)
    const { _csrf: otherCsrf } = await createKeyForm(server, other)
    const { keyId: second } = await cliJson<{ keyId: string }>(
      ['keys', 'create', '--tenant', 'acme', '--label', 'gone-too'],
      env,
    )
    await postForm(
      server,
      `/api-keys/${second}/revoke`,
      { _csrf: otherCsrf, confirm: 'yes' },
      { cookie: other.header(), origin: server.url },
    )
    expect(noticeOf((await pageOf(server, jar, '/api-keys')).html)).toBeNull()
    expect(noticeOf((await pageOf(server, other, '/api-keys')).html)).toBe(`Key ${second} revoked.`)
  })

  it('answers a GET of a form’s URL (a reload, Enter in the address bar) with the page the form is on', async () => {
    const { server } = started
    const { jar } = await signInOverHttp(server, admin)
    for (const [path, page] of [
      ['/sign-out', '/'],
      ['/api-keys/AAAAAAAAAAAA/revoke', '/api-keys'],
      ['/billing/trial', '/billing'],
    ]) {
      const answer = await fetch(`${server.url}${path}`, { headers: { cookie: jar.header() }, redirect: 'manual' })
      expect(answer.status, path).toBe(303)
      expect(answer.headers.get('location'), path).toBe(page)
    }
    // Nothing happened: the GET of /sign-out left the session signed in.
    expect((await pageOf(server, jar, '/')).status).toBe(200)
    // Signed out, the way back is kept through the sign-in.
    const anonymous = await fetch(`${server.url}/billing/trial`, { redirect: 'manual' })
    expect(anonymous.status).toBe(303)
    expect(anonymous.headers.get('location')).toBe('/sign-in?next=%2Fbilling%2Ftrial')
    expect((await fetch(`${server.url}/sign-out`, { redirect: 'manual' })).headers.get('location')).toBe('/sign-in')
  })

  it('brings a deep link back after sign-in, and never sends anyone to another site', async () => {
    const { server } = started
    const context = await browser.context()
    const page = await context.newPage()
    await page.goto(`${server.url}/billing`)
    await shown(page.getByRole('heading', { level: 1, name: 'Sign in' }))
    expect(new URL(page.url()).searchParams.get('next')).toBe('/billing')
    await page.getByLabel('Email').fill(admin.email)
    await page.getByLabel('Password').fill(admin.password)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await shown(page.getByRole('heading', { level: 1, name: 'Billing' }))
    expect(new URL(page.url()).pathname).toBe('/billing')
    // Signed in already, a sign-in link goes to its next page, when that is one of this site's.
    await page.goto(`${server.url}/sign-in?next=${encodeURIComponent('/usage')}`)
    await shown(page.getByRole('heading', { level: 1, name: 'Usage' }))
    await context.close()

    const hostile = ['//evil.example/', '/\\evil.example', 'https://evil.example/', '/\t/evil.example', 'javascript:x']
    const { jar } = await signInOverHttp(server, admin)
    for (const next of hostile) {
      const answer = await fetch(`${server.url}/sign-in?next=${encodeURIComponent(next)}`, {
        headers: { cookie: jar.header() },
        redirect: 'manual',
      })
      expect(answer.headers.get('location'), next).toBe('/')
    }
    // And through a real sign-in, with the hostile next on the form's URL.
    const { response } = await signInOverHttp(server, admin, { next: '//evil.example/' })
    expect(response.status).toBe(303)
    expect(response.headers.get('location')).toBe('/')
    const form = await (await fetch(`${server.url}/sign-in?next=${encodeURIComponent('//evil.example/')}`)).text()
    expect(form).toContain('action="/sign-in"')
  })

  it('edits a key’s label and allowed addresses, and rotates it with a grace, showing the new secret once', async () => {
    const { server } = started
    const context = await browser.context({ viewport: { width: 1280, height: 860 } })
    const page = await context.newPage()
    await signIn(page, server, admin)
    const old = await createKeyInBrowser(page, 'office-agent', { copy: false })
    await nav(page, 'API keys')
    expect(await rowOf(page, old.keyId).getByText('Only from').count()).toBe(0)

    // Edit: an address that is not this test's, then a malformed one, then this test's loopback too.
    await rowOf(page, old.keyId)
      .getByRole('link', { name: `Edit key ${old.keyId}` })
      .click()
    await shown(page.getByRole('heading', { level: 1, name: `Edit key ${old.keyId}` }))
    await page.getByLabel('Label').fill('office-v2')
    await page.getByLabel('Allowed addresses').fill('203.0.113.0/24')
    await page.getByRole('button', { name: 'Save' }).click()
    await shown(page.getByRole('status').filter({ hasText: `Key ${old.keyId} updated.` }))
    await shown(rowOf(page, old.keyId).getByRole('cell', { name: 'office-v2' }))
    await shown(rowOf(page, old.keyId).getByText('Only from 203.0.113.0/24'))
    const refused = await apiGet(server, '/me/tenant', old.secret)
    expect([refused.status, await refused.json()]).toEqual([
      403,
      { error: 'forbidden', message: 'This API key cannot be used from this address.' },
    ])
    await rowOf(page, old.keyId)
      .getByRole('link', { name: `Edit key ${old.keyId}` })
      .click()
    await page.getByLabel('Allowed addresses').fill('10.0.0.1/8')
    await page.getByRole('button', { name: 'Save' }).click()
    await shown(
      page.getByRole('alert').filter({
        hasText: 'Allowed address 1 "10.0.0.1/8" has bits set past its /8 prefix (the range is "10.0.0.0/8").',
      }),
    )
    await page.getByLabel('Allowed addresses').fill('203.0.113.0/24\n127.0.0.1, ::1')
    await page.getByRole('button', { name: 'Save' }).click()
    await shown(page.getByRole('status').filter({ hasText: `Key ${old.keyId} updated.` }))
    expect((await apiGet(server, '/me/tenant', old.secret)).status).toBe(200)

    // Rotate, behind a page that names the key and offers the grace.
    await rowOf(page, old.keyId)
      .getByRole('button', { name: `Rotate key ${old.keyId}` })
      .click()
    await shown(page.getByRole('heading', { level: 1, name: `Rotate key ${old.keyId}?` }))
    for (const choice of ['Now', 'In 1 hour', 'In 24 hours', 'In 7 days'])
      await shown(page.getByRole('radio', { name: choice }))
    expect(await page.getByRole('radio', { name: 'In 24 hours' }).isChecked()).toBe(true)
    const answer = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/rotate'))
    await page.getByRole('button', { name: 'Rotate key' }).click()
    expect((await answer).headers()['cache-control']).toBe('no-store')
    await shown(page.getByRole('heading', { level: 1, name: 'Key rotated' }))
    await shown(page.getByText('It will not be shown again.'))
    const secret = await page.getByRole('textbox', { name: 'Secret key' }).inputValue()
    expect(secret).toMatch(/^sk_live_/)
    const successor = secret.split('_')[2]!
    await shown(page.getByText(`${old.keyId}, which works until`))
    mkdirSync(SCREENSHOTS, { recursive: true })
    await page.screenshot({ path: join(SCREENSHOTS, 'key-rotated.png') })
    for (const key of [old.secret, secret]) expect((await apiGet(server, '/me/tenant', key)).status).toBe(200)

    await nav(page, 'API keys')
    expect(await page.content()).not.toContain(secret)
    await shown(rowOf(page, old.keyId).getByText(/expires in 2[34] h/))
    await shown(rowOf(page, successor).getByRole('cell', { name: 'office-v2' }))
    await page.screenshot({ path: join(SCREENSHOTS, 'api-keys-ending.png'), fullPage: true })
    // Now: the successor ends at once, rotated into a third key.
    await rowOf(page, successor)
      .getByRole('button', { name: `Rotate key ${successor}` })
      .click()
    await page.getByRole('radio', { name: 'Now' }).check()
    await page.getByRole('button', { name: 'Rotate key' }).click()
    await shown(page.getByText(`${successor}, which no longer works`))
    expect((await apiGet(server, '/me/tenant', secret)).status).toBe(401)

    await nav(page, 'Activity')
    await shown(page.getByRole('row').filter({ hasText: 'Key edited' }).filter({ hasText: old.keyId }).first())
    await shown(
      page
        .getByRole('row')
        .filter({ hasText: 'Key rotated' })
        .filter({ hasText: `${old.keyId} → ${successor}` }),
    )
    await context.close()
  })

  it('refuses an impossible expiry date and a label with nothing visible, saying why', async () => {
    const { server } = started
    const { jar } = await signInOverHttp(server, admin)
    const create = async (fields: Record<string, string>) => {
      const response = await postForm(
        server,
        '/api-keys',
        { ...(await createKeyForm(server, jar)), ...fields },
        { cookie: jar.header(), origin: server.url },
      )
      return { status: response.status, alert: (await response.text()).match(/role="alert">([^<]*)</)?.[1] ?? null }
    }
    expect(await create({ label: 'feb', expires: '2027-02-31' })).toEqual({
      status: 400,
      alert: 'The expiry must be a real date, written like 2030-01-31.',
    })
    expect(await create({ label: 'apr', expires: '2031-04-31' })).toMatchObject({ status: 400 })
    for (const label of ['\u3164', '\u2800\u2800', '\u3164 \uffa0'])
      expect(await create({ label }), JSON.stringify(label)).toEqual({
        status: 400,
        alert: 'The label must contain a visible character.',
      })
    expect(await create({ label: 'real-day', expires: '2031-02-28' })).toMatchObject({ status: 201 })
    const { html } = await pageOf(server, jar, '/api-keys')
    expect(html).not.toContain('>feb<')
    expect(html).toContain('28\u00a0Feb\u00a02031')
  })

  it('logs every refused origin with both origins and TRUST_PROXY, and names the setting when only the scheme differs', async () => {
    const { server } = started
    const host = new URL(server.url).host
    // A proxy terminates TLS, but the app was not told to trust it: the browser says https, the app sees http.
    const lines = () => server.logs.filter((line) => line.msg === 'refused form: origin')
    const { response } = await signInOverHttp(server, admin, { origin: `https://${host}` })
    expect(response.status).toBe(403)
    await waitFor(() => lines().length > 0, 5_000)
    const page = await response.text()
    expect(page).toContain(
      `This form was sent from https://${host}, but the dashboard sees its own address as http://${host}.`,
    )
    expect(page).toContain('TRUST_PROXY')
    expect(page).not.toContain('cookies')
    expect(lines().at(-1)).toMatchObject({
      level: 40,
      path: '/sign-in',
      origin: `https://${host}`,
      expected: `http://${host}`,
      trustProxy: false,
      publicOrigin: null,
    })
    // Without TRUST_PROXY, a client's own X-Forwarded-Host is not believed.
    const { response: claimed } = await signInOverHttp(server, admin, {
      headers: { 'x-forwarded-host': 'evil.example' },
      origin: 'http://evil.example',
    })
    expect(claimed.status).toBe(403)
    // A cross-site form on a signed-in page: refused, logged, and the page does not talk of proxies.
    const { jar } = await signInOverHttp(server, admin)
    const { _csrf } = await createKeyForm(server, jar)
    const before = lines().length
    const foreign = await postForm(
      server,
      '/api-keys',
      { _csrf, label: 'x' },
      { cookie: jar.header(), origin: 'http://evil.example' },
    )
    expect(foreign.status).toBe(403)
    expect(await foreign.text()).not.toContain('TRUST_PROXY')
    await waitFor(() => lines().length > before, 5_000)
    expect(lines().at(-1)).toMatchObject({
      path: '/api-keys',
      origin: 'http://evil.example',
      expected: `http://${host}`,
    })
    // A forged, very long Origin is logged cut short.
    const long = `http://${'a'.repeat(5_000)}.example`
    const logged = lines().length
    expect((await postForm(server, '/api-keys', { _csrf }, { cookie: jar.header(), origin: long })).status).toBe(403)
    await waitFor(() => lines().length > logged, 5_000)
    expect(lines().at(-1)!.origin).toBe(long.slice(0, 300))
  })
})

describe.skipIf(!browserAvailable)('the Billing page: plan, period and cancellation', { timeout: 180_000 }, () => {
  let started: Started
  let browser: Browser
  let admin: Credentials

  const viewer = { email: 'viewer@acme.example', password: 'viewer-password-123' }

  beforeAll(async () => {
    started = await startOnSqlite()
    admin = demoMember(started.server)
    const added = await cliWithInput(
      ['members', 'add', '--tenant', 'acme', '--email', viewer.email, '--role', 'viewer', '--password-stdin'],
      started.env,
      viewer.password,
    )
    expect(added.code).toBe(0)
    browser = await launchBrowser()
  }, 120_000)
  afterAll(async () => {
    await browser?.close()
    await started?.cleanup()
  })

  it('upgrades now, schedules a downgrade with its date, keeps the plan, cancels and undoes it, behind CSRF', async () => {
    const { server, env } = started
    await cliJson(['tenants', 'set', '--slug', 'acme', '--subscription', 'active'], env)
    const period = await cliJson<{ currentPeriodStart: string; currentPeriodEnd: string }>(
      ['billing', 'show', '--tenant', 'acme'],
      env,
    )
    const end = period.currentPeriodEnd.slice(0, 10)
    const context = await browser.context({ viewport: { width: 1280, height: 860 } })
    const page = await context.newPage()
    page.on('dialog', (dialog) => void dialog.accept())
    await signIn(page, server, admin)
    await page.goto(`${server.url}/billing`)
    await shown(page.getByRole('heading', { level: 2, name: 'Plan' }))
    const plan = page.getByRole('region', { name: 'Plan' })
    expect(await plan.textContent()).toContain(`${period.currentPeriodStart.slice(0, 10)} to ${end}`)
    expect(await plan.textContent()).toContain(new Date().toISOString().slice(0, 10))

    await page.getByRole('button', { name: 'Upgrade to Business now' }).click()
    await shown(page.getByRole('status'))
    expect(await page.getByRole('status').textContent()).toBe(
      'Your plan is now Business: its limits apply from the next request.',
    )
    await page.getByRole('button', { name: `Downgrade to Team on ${end}` }).click()
    await shown(page.getByRole('button', { name: 'Keep Business' }))
    expect(await page.getByRole('status').textContent()).toBe(`Your plan changes to Team on ${end}.`)
    expect(await plan.textContent()).toContain(`Team from ${end}`)
    mkdirSync(SCREENSHOTS, { recursive: true })
    await page.screenshot({ path: join(SCREENSHOTS, 'billing-plan.png'), fullPage: true })
    await page.getByRole('button', { name: 'Keep Business' }).click()
    await shown(page.getByRole('status'))
    expect(await page.getByRole('status').textContent()).toBe('You stay on Business: the scheduled change is dropped.')

    await page.getByRole('button', { name: 'Cancel at period end' }).click()
    await shown(page.getByRole('button', { name: 'Undo cancellation' }))
    expect(await page.getByRole('status').textContent()).toBe(`Your subscription ends on ${end}.`)
    expect(await page.getByRole('button', { name: /^(Upgrade|Downgrade)/ }).count()).toBe(0)
    await page.getByRole('button', { name: 'Undo cancellation' }).click()
    await shown(page.getByRole('button', { name: 'Cancel at period end' }))

    // A form without the page's CSRF token changes nothing.
    const { cookie, csrf } = await sessionOf(context, page)
    const forged = await postForm(server, '/billing/plan', { tier: 'starter' }, { cookie, origin: server.url })
    expect(forged.status).toBe(403)
    const unknown = await postForm(
      server,
      '/billing/plan',
      { _csrf: csrf, tier: '__proto__' },
      { cookie, origin: server.url },
    )
    expect(unknown.status).toBe(400)
    expect(
      (await cliJson<{ tier: string; scheduledTier: null }>(['billing', 'show', '--tenant', 'acme'], env)).tier,
    ).toBe('business')
    await page.goto(`${server.url}/activity`)
    const activity = await page.locator('main').textContent()
    for (const label of [
      'Plan changed',
      'Plan change scheduled',
      'Scheduled plan change dropped',
      'Cancellation scheduled',
      'Cancellation undone',
    ])
      expect(activity).toContain(label)
    await context.close()
  })

  it('shows a viewer the plan but no form, and refuses a viewer’s plan change, cancellation and undo (403)', async () => {
    const { server, env } = started
    const context = await browser.context()
    const page = await context.newPage()
    await signIn(page, server, viewer)
    await page.goto(`${server.url}/billing`)
    await shown(page.getByText('An admin of your tenant can change the plan.'))
    expect(
      await page.getByRole('button', { name: /Upgrade|Downgrade|Cancel at period end|Undo cancellation/ }).count(),
    ).toBe(0)
    const { cookie, csrf } = await sessionOf(context, page)
    const before = await cliJson<{ tier: string }>(['billing', 'show', '--tenant', 'acme'], env)
    for (const [path, fields] of [
      ['/billing/plan', { tier: 'starter' }],
      ['/billing/cancel', {}],
      ['/billing/resume', {}],
    ] as const) {
      const forged = await postForm(server, path, { _csrf: csrf, ...fields }, { cookie, origin: server.url })
      expect(forged.status, path).toBe(403)
      expect(await forged.text(), path).toContain('only an admin can change them')
    }
    expect(await cliJson<{ tier: string }>(['billing', 'show', '--tenant', 'acme'], env)).toEqual(before)
    await context.close()
  })
})
