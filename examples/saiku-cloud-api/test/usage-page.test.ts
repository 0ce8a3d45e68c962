import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { BrowserContext, Locator, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { UsageHistory } from '@saiku/core'
import { hasChromium, launchBrowser, type Browser } from './browser.js'
import {
  cliJson,
  exampleDir,
  processTimeout,
  repoRoot,
  startServer,
  tempDatabase,
  type RunningServer,
  type TempDir,
} from './helpers.js'
import { csvField, usageChartSvg, usageCsv } from '../src/dashboard/shared/usage-chart.js'

// The Usage page's requests over time: a chart drawn on the server, its table, each key, and a CSV download.

vi.setConfig({ testTimeout: processTimeout(3), hookTimeout: processTimeout(3) })

const ZERO = { admitted: 0, rateLimited: 0, quotaExceeded: 0, forbidden: 0, paymentRequired: 0 }
const HOSTILE_LABEL = '=HYPERLINK("http://evil.example","x")<img src=x onerror=alert(1)>'

describe('the CSV and the chart, as text', () => {
  it('quotes a field with a quote, comma or line break, and keeps one a spreadsheet would run as text', () => {
    expect(csvField('plain')).toBe('plain')
    expect(csvField('a,b')).toBe('"a,b"')
    expect(csvField('say "hi"')).toBe('"say ""hi"""')
    expect(csvField('two\nlines')).toBe('"two\nlines"')
    for (const start of ['=', '+', '-', '@', '\t', '\r']) expect(csvField(`${start}1+1`)).toMatch(/^"?'/)
    expect(csvField('=1+1')).toBe("'=1+1")
    expect(csvField(-3)).toBe('-3')
  })

  const history: UsageHistory = {
    tenantId: 't',
    granularity: 'hour',
    from: '2026-12-01T00:00:00.000Z',
    to: '2026-12-01T02:00:00.000Z',
    points: [
      { start: '2026-12-01T00:00:00.000Z', ...ZERO, admitted: 5, rateLimited: 1 },
      { start: '2026-12-01T01:00:00.000Z', ...ZERO },
    ],
    totals: { ...ZERO, admitted: 5, rateLimited: 1 },
    keys: [
      { keyId: 'AAAAAAAAAAAA', ...ZERO, admitted: 5, rateLimited: 1 },
      { keyId: 'BBBBBBBBBBBB', ...ZERO },
    ],
  }

  it('writes a row per hour for all keys and a row per key for the range, labels kept as text', () => {
    const csv = usageCsv(history, new Map([['AAAAAAAAAAAA', HOSTILE_LABEL]]))
    expect(csv.split('\r\n')).toEqual([
      'period_start,period_end,key_id,label,admitted,rate_limited,quota_exceeded,forbidden,payment_required',
      '2026-12-01T00:00:00.000Z,2026-12-01T01:00:00.000Z,,All keys,5,1,0,0,0',
      '2026-12-01T01:00:00.000Z,2026-12-01T02:00:00.000Z,,All keys,0,0,0,0,0',
      `2026-12-01T00:00:00.000Z,2026-12-01T02:00:00.000Z,AAAAAAAAAAAA,"'=HYPERLINK(""http://evil.example"",""x"")<img src=x onerror=alert(1)>",5,1,0,0,0`,
      '2026-12-01T00:00:00.000Z,2026-12-01T02:00:00.000Z,BBBBBBBBBBBB,(revoked key),0,0,0,0,0',
      '',
    ])
  })

  it('draws one stacked bar per point, named for assistive technology, with no inline style', () => {
    const svg = usageChartSvg(history, 'c')
    expect(svg).toMatch(/^<svg [^>]*role="img" aria-labelledby="c c-desc"/)
    expect(svg.match(/class="bar-admitted"/g)).toHaveLength(2)
    expect(svg.match(/class="bar-refused"/g)).toHaveLength(2)
    expect(svg).toContain('<title>1 Dec 00:00 UTC: 5 admitted, 1 refused</title>')
    expect(svg).not.toMatch(/style=/)
  })
})

const browserAvailable = hasChromium()
const SCREENSHOTS = join(repoRoot, '.cache/screenshots/dashboard')

async function shown(locator: Locator): Promise<void> {
  await locator.first().waitFor({ state: 'visible', timeout: 30_000 })
}

async function cliWithInput(args: string[], env: Record<string, string>, input: string): Promise<number> {
  const child = spawn(process.execPath, [join(exampleDir, 'bin/saiku.mjs'), ...args], {
    cwd: repoRoot,
    env: { ...process.env, NODE_OPTIONS: '--conditions=@saiku/source', ...env },
    stdio: ['pipe', 'ignore', 'ignore'],
  })
  child.stdin.end(input)
  const [code] = (await once(child, 'exit')) as [number]
  return code
}

async function signIn(page: Page, server: RunningServer, email: string, password: string): Promise<void> {
  await page.goto(`${server.url}/sign-in`)
  await page.getByLabel('Email').fill(email)
  await page.getByLabel('Password').fill(password)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await shown(page.getByRole('heading', { level: 1, name: 'Overview' }))
}

const cookieOf = async (context: BrowserContext): Promise<string> =>
  (await context.cookies())
    .filter((cookie) => cookie.name.includes('saiku_session'))
    .map((cookie) => `${cookie.name}=${cookie.value}`)
    .join('; ')

describe.skipIf(!browserAvailable)('the Usage page over time, in a browser', { timeout: 180_000 }, () => {
  let db: TempDir
  let server: RunningServer
  let env: Record<string, string>
  let browser: Browser
  let admin: { email: string; password: string }
  const viewer = { email: 'viewer@acme.example', password: 'viewer-password-123' }
  let hostile: { keyId: string; secret: string }
  let globex: { keyId: string; secret: string }
  const dialogs: string[] = []

  beforeAll(async () => {
    db = tempDatabase()
    env = { DATABASE_URL: db.databaseUrl, REDIS_URL: '', SAIKU_DATA_DIR: db.path }
    server = await startServer(env)
    const match = server.stderr().match(/email:\s+(\S+)\n\s+password:\s+(\S+)/)!
    admin = { email: match[1]!, password: match[2]! }
    hostile = await cliJson(['keys', 'create', '--tenant', 'acme', '--label', HOSTILE_LABEL], env)
    await cliJson(['tenants', 'create', '--slug', 'globex', '--tier', 'starter', '--subscription', 'active'], env)
    globex = await cliJson(['keys', 'create', '--tenant', 'globex', '--label', 'globex-agent'], env)
    expect(
      await cliWithInput(
        ['members', 'add', '--tenant', 'acme', '--email', viewer.email, '--role', 'viewer', '--password-stdin'],
        env,
        viewer.password,
      ),
    ).toBe(0)
    // acme (starter: 60 a minute): 62 requests by one key, the last two refused; globex: 5.
    const get = (key: string) => fetch(`${server.url}/me/tenant`, { headers: { authorization: `Bearer ${key}` } })
    const statuses: number[] = []
    for (let i = 0; i < 62; i++) statuses.push((await get(hostile.secret)).status)
    expect(statuses.filter((status) => status === 429)).toHaveLength(2)
    for (let i = 0; i < 5; i++) await get(globex.secret)
    browser = await launchBrowser()
  }, 120_000)
  afterAll(async () => {
    await browser?.close()
    await server?.stop()
    db?.remove()
  })

  it('charts the hours and lists each key, hostile labels as text, another tenant nowhere', async () => {
    const context = await browser.context({ viewport: { width: 1280, height: 1000 } })
    const page = await context.newPage()
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message())
      void dialog.accept()
    })
    await signIn(page, server, admin.email, admin.password)
    await page.getByRole('navigation', { name: 'Dashboard' }).getByRole('link', { name: 'Usage', exact: true }).click()
    await shown(page.getByRole('heading', { level: 1, name: 'Usage' }))
    await shown(page.getByRole('img', { name: 'Requests per hour, admitted and refused, stacked' }))
    expect(
      await page
        .getByRole('navigation', { name: 'Range' })
        .getByRole('link', { name: 'Last 7 days' })
        .getAttribute('aria-current'),
    ).toBe('page')
    const hours = page.getByRole('table', { name: 'Requests per hour, last 7 days' })
    expect(await hours.getByRole('row').count()).toBe(1 + 168)
    // The current hour, last: 60 admitted and 2 rate limited (and nothing else of acme's yet).
    const last = hours.getByRole('row').last()
    expect(await last.getByRole('cell').allTextContents()).toEqual(['60', '2', '0', '0', '0'])
    const keyRow = page.getByRole('row').filter({ has: page.getByRole('cell', { name: hostile.keyId, exact: true }) })
    expect(await keyRow.getByRole('cell').allTextContents()).toEqual([
      hostile.keyId,
      HOSTILE_LABEL,
      '62',
      '2',
      expect.stringMatching(/UTC$/),
    ])
    expect(await page.locator('img').count()).toBe(0)
    expect(dialogs).toEqual([])
    expect(await page.getByText(globex.keyId).count()).toBe(0)
    mkdirSync(SCREENSHOTS, { recursive: true })
    await page.screenshot({ path: join(SCREENSHOTS, 'usage-history.png'), fullPage: true })

    await page.getByRole('link', { name: 'Last 30 days' }).click()
    await shown(page.getByRole('table', { name: 'Requests per day, last 30 days' }))
    expect(page.url()).toMatch(/\/usage\?range=30d$/)
    const days = page.getByRole('table', { name: 'Requests per day, last 30 days' }).getByRole('row')
    expect(await days.count()).toBe(1 + 30)
    expect(await days.last().getByRole('cell').allTextContents()).toEqual(['60', '2', '0', '0', '0'])
    await context.close()
  })

  it('downloads the same range as CSV, its formula-shaped label kept as text, for this tenant only', async () => {
    const context = await browser.context()
    const page = await context.newPage()
    await signIn(page, server, admin.email, admin.password)
    const cookie = await cookieOf(context)
    const res = await fetch(`${server.url}/usage.csv?range=24h`, { headers: { cookie } })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('text/csv; charset=utf-8')
    expect(res.headers.get('content-disposition')).toMatch(/^attachment; filename="usage-acme-24h-[\dT-]+\.csv"$/)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const lines = (await res.text()).split('\r\n')
    expect(lines).toHaveLength(1 + 24 + 1 + 1)
    expect(lines[24]).toMatch(/^[^,]+,[^,]+,,All keys,60,2,0,0,0$/)
    expect(lines[25]).toBe(
      `${lines[1]!.split(',')[0]},${lines[24]!.split(',')[1]},${hostile.keyId},"'=HYPERLINK(""http://evil.example"",""x"")<img src=x onerror=alert(1)>",60,2,0,0,0`,
    )
    expect(lines.join('\n')).not.toContain(globex.keyId)
    // Without a session: the sign-in page, never the numbers.
    const anonymous = await fetch(`${server.url}/usage.csv`, { redirect: 'manual' })
    expect(anonymous.status).toBeGreaterThanOrEqual(300)
    expect(anonymous.headers.get('location')).toMatch(/^\/sign-in/)
    expect(await anonymous.text()).not.toContain('All keys')
    expect((await fetch(`${server.url}/usage.csv?range=1y`, { headers: { cookie } })).status).toBe(400)
    await context.close()
  })

  it('shows a viewer the same page and CSV, with no form to post; a cross-site POST changes nothing', async () => {
    const context = await browser.context()
    const page = await context.newPage()
    await signIn(page, server, viewer.email, viewer.password)
    await page.goto(`${server.url}/usage?range=24h`)
    await shown(page.getByRole('table', { name: 'Requests per hour, last 24 hours' }))
    expect(
      await page
        .locator('form[method="post" i]')
        // Sign out is in the navigation twice: beside the page, and in the phone's folded Menu (hidden here).
        .filter({ hasNot: page.locator('button', { hasText: 'Sign out' }) })
        .count(),
    ).toBe(0)
    const cookie = await cookieOf(context)
    expect((await fetch(`${server.url}/usage.csv`, { headers: { cookie } })).status).toBe(200)
    const forged = await fetch(`${server.url}/usage`, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie, origin: 'http://evil.example', 'content-type': 'application/x-www-form-urlencoded' },
      body: 'range=24h',
    })
    expect(forged.status).toBeGreaterThanOrEqual(400)
    await context.close()
  })

  it('works with JavaScript off: the chart, the table and the CSV link are all in the HTML', async () => {
    const context = await browser.context({ javaScriptEnabled: false })
    const page = await context.newPage()
    await signIn(page, server, admin.email, admin.password)
    await page.goto(`${server.url}/usage?range=24h`)
    await shown(page.getByRole('img', { name: 'Requests per hour, admitted and refused, stacked' }))
    await shown(page.getByRole('link', { name: 'Download CSV' }))
    expect(await page.getByRole('link', { name: 'Download CSV' }).getAttribute('href')).toBe('/usage.csv?range=24h')
    await context.close()
  })
})
