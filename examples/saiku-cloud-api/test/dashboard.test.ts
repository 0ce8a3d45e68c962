import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { mkdirSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { join } from 'node:path'
import pg from 'pg'
import type { BrowserContext, Locator, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { postgresUrl } from '../../../test/services.js'
import { hasChromium, launchBrowser, type Browser } from './browser.js'
import { cliJson, exampleDir, repoRoot, startServer, tempDatabase, type RunningServer, type TempDir } from './helpers.js'

// The dashboard, driven the way people use it: Debian's Chromium through
// playwright-core, against the real server process, by role and accessible name.

const browserAvailable = hasChromium()
const SCREENSHOTS = join(repoRoot, 'docs/dashboard')
const XSS_LABEL = '<img src=x onerror=alert(1)>'

/** Waits until the element is shown (playwright-core has no web-first assertions). */
async function shown(locator: Locator): Promise<void> {
  await locator.first().waitFor({ state: 'visible', timeout: 15_000 })
}

/** Follows a link of the sidebar and waits for its page. */
async function nav(page: Page, name: string): Promise<void> {
  await page.getByRole('navigation', { name: 'Dashboard' }).getByRole('link', { name, exact: true }).click()
  await shown(page.getByRole('heading', { level: 1, name, exact: true }))
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
async function cliWithInput(args: string[], env: Record<string, string>, input: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [join(exampleDir, 'bin/saiku.mjs'), ...args], { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
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
async function createKeyInBrowser(page: Page, label: string, options: { copy: boolean } = { copy: true }): Promise<{ keyId: string; secret: string }> {
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
  describe.skipIf(!browserAvailable)(`the spec's key flow in a browser (${name})`, () => {
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
    }, 60_000)
    afterAll(async () => {
      await browser?.close()
      await started?.cleanup()
    })

    const shoot = async (file: string) => {
      if (!screenshots) return
      mkdirSync(SCREENSHOTS, { recursive: true })
      await page.screenshot({ path: join(SCREENSHOTS, file), fullPage: true })
    }

    it('signs in, mints, rotates and revokes a key, starts a trial, and signs out', { timeout: 120_000 }, async () => {
      const { server, env } = started
      const admin = demoMember(server)
      expect(server.stderr()).toContain(`Dashboard: ${server.url}/sign-in`)

      await page.goto(`${server.url}/sign-in`)
      await shoot('sign-in.png')
      await signIn(page, server, admin)
      expect(await page.getByRole('navigation', { name: 'Dashboard' }).getByRole('link', { name: 'Overview' }).getAttribute('aria-current')).toBe('page')
      await shown(page.getByText('acme', { exact: true }).first())
      await shown(page.getByText(`curl ${server.url}/me/tenant`))
      await shoot('overview.png')

      // API keys → Create key → Label → Copy.
      const first = await createKeyInBrowser(page, 'production-agent')
      await shoot('key-created.png')
      const tenant = await apiGet(server, '/me/tenant', first.secret)
      expect(tenant.status).toBe(200)
      expect(await tenant.json()).toMatchObject({ tenantSlug: 'acme', tier: 'starter', connectionName: 'production-warehouse' })

      // Reload: the secret is gone; the ID and label are listed.
      await page.reload()
      await shown(page.getByRole('heading', { level: 1, name: 'API keys' }))
      expect(await page.content()).not.toContain(first.secret)
      await shown(rowOf(page, first.keyId).getByRole('cell', { name: 'production-agent' }))

      // Rotation: a second key with the same label; both work.
      const second = await createKeyInBrowser(page, 'production-agent')
      expect(second.keyId).not.toBe(first.keyId)
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
      expect(await page.getByRole('row').filter({ hasText: 'Key revoked' }).filter({ hasText: first.keyId }).count()).toBe(1)
      expect(await page.getByRole('row').filter({ hasText: 'Key created' }).filter({ hasText: admin.email }).count()).toBe(2)
      expect(await page.getByRole('row').filter({ hasText: 'Signed in' }).count()).toBeGreaterThan(0)
      const activityHtml = await page.content()
      expect(activityHtml).not.toContain(first.secret.slice(21))
      expect(activityHtml).not.toContain(second.secret.slice(21))
      await shoot('activity.png')

      // Billing: a tenant without a subscription starts its trial; its 402 becomes 200.
      await nav(page, 'Billing')
      await shown(page.getByRole('heading', { level: 1, name: 'Billing' }))
      await shoot('billing.png')
      await cliJson(['tenants', 'create', '--slug', 'initech', '--tier', 'team', '--subscription', 'none'], env)
      const initechPassword = 'initech-admin-password-1'
      const added = await cliWithInput(['members', 'add', '--tenant', 'initech', '--email', 'ops@initech.example', '--role', 'admin', '--password-stdin'], env, `${initechPassword}\n`)
      expect(added).toMatchObject({ code: 0 })
      expect(added.stdout).not.toContain(initechPassword)
      const { secret: initechKey } = await cliJson<{ secret: string }>(['keys', 'create', '--tenant', 'initech', '--label', 'ops'], env)
      const refused = await apiGet(server, '/me/tenant', initechKey)
      expect(refused.status).toBe(402)
      expect(((await refused.json()) as { message: string }).message).toContain('Visit /billing to start your 14-day trial.')

      const other = await browser.context()
      const otherPage = await other.newPage()
      await signIn(otherPage, server, { email: 'ops@initech.example', password: initechPassword })
      await otherPage.goto(`${server.url}/billing`)
      await shown(otherPage.getByText('No subscription'))
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
