import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { BrowserContext, Locator, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { Webhook } from 'standardwebhooks'
import { hasChromium, launchBrowser, type Browser } from '../browser.js'
import {
  exampleDir,
  processTimeout,
  repoRoot,
  startServer,
  tempDatabase,
  waitFor,
  type RunningServer,
  type TempDir,
} from '../helpers.js'
import { startReceiver, type Receiver } from './support.js'

vi.setConfig({ testTimeout: processTimeout(3), hookTimeout: processTimeout(4) })

const SCREENSHOTS = join(repoRoot, '.cache/screenshots/dashboard')
const XSS = '<img src=x onerror=alert(1)>'

async function shown(locator: Locator): Promise<void> {
  await locator.first().waitFor({ state: 'visible', timeout: 30_000 })
}

async function addMember(env: Record<string, string>, tenant: string, email: string, role: string, password: string) {
  const child = spawn(
    process.execPath,
    [
      join(exampleDir, 'bin/saiku.mjs'),
      'members',
      'add',
      '--tenant',
      tenant,
      '--email',
      email,
      '--role',
      role,
      '--password-stdin',
    ],
    {
      cwd: repoRoot,
      env: { ...process.env, NODE_OPTIONS: '--conditions=@saiku/source', ...env },
      stdio: ['pipe', 'ignore', 'pipe'],
    },
  )
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  child.stdin.end(password)
  const [code] = (await once(child, 'exit')) as [number]
  expect(code, stderr).toBe(0)
}

async function cli(env: Record<string, string>, ...args: string[]): Promise<void> {
  const child = spawn(process.execPath, [join(exampleDir, 'bin/saiku.mjs'), ...args], {
    cwd: repoRoot,
    env: { ...process.env, NODE_OPTIONS: '--conditions=@saiku/source', ...env },
    stdio: 'ignore',
  })
  const [code] = (await once(child, 'exit')) as [number]
  expect(code).toBe(0)
}

async function signIn(page: Page, server: RunningServer, email: string, password: string): Promise<void> {
  await page.goto(`${server.url}/sign-in`)
  await page.getByLabel('Email').fill(email)
  await page.getByLabel('Password').fill(password)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await shown(page.getByRole('heading', { level: 1, name: 'Overview' }))
}

async function openWebhooks(page: Page): Promise<void> {
  await page.getByRole('navigation', { name: 'Dashboard' }).getByRole('link', { name: 'Webhooks', exact: true }).click()
  await shown(page.getByRole('heading', { level: 1, name: 'Webhooks', exact: true }))
}

async function session(context: BrowserContext, page: Page): Promise<{ cookie: string; csrf: string }> {
  const cookie = (await context.cookies()).find((c) => c.name === 'saiku_session')!
  return {
    cookie: `saiku_session=${cookie.value}`,
    csrf: await page.locator('input[name="_csrf"]').first().inputValue(),
  }
}

const postForm = (
  server: RunningServer,
  path: string,
  fields: Record<string, string>,
  headers: Record<string, string>,
) =>
  fetch(`${server.url}${path}`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(fields).toString(),
  })

describe.skipIf(!hasChromium())('the Webhooks page', () => {
  let db: TempDir
  let env: Record<string, string>
  let server: RunningServer
  let browser: Browser
  let receiver: Receiver
  const admin = { email: 'hooks-admin@acme.example', password: 'admin-password-123' }
  const viewer = { email: 'viewer@acme.example', password: 'viewer-password-123' }
  const stranger = { email: 'admin@umbrella.example', password: 'umbrella-password-1' }
  const dialogs: string[] = []

  beforeAll(async () => {
    receiver = await startReceiver()
    db = tempDatabase()
    env = { DATABASE_URL: db.databaseUrl, REDIS_URL: '', SAIKU_DATA_DIR: db.path, WEBHOOKS_ALLOW_LOOPBACK: '1' }
    server = await startServer(env)
    await addMember(env, 'acme', admin.email, 'admin', admin.password)
    await addMember(env, 'acme', viewer.email, 'viewer', viewer.password)
    await cli(env, 'tenants', 'create', '--slug', 'umbrella', '--tier', 'team')
    await addMember(env, 'umbrella', stranger.email, 'admin', stranger.password)
    browser = await launchBrowser()
  })
  afterAll(async () => {
    await browser?.close()
    await server?.stop()
    await receiver?.close()
    db?.remove()
  })

  it('lets an admin add an endpoint (secret once), send a test event, read the log and redeliver; names and URLs stay text', async () => {
    const context = await browser.context({ viewport: { width: 1280, height: 900 } })
    const page = await context.newPage()
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message())
      void dialog.accept()
    })
    await signIn(page, server, admin.email, admin.password)
    await openWebhooks(page)
    await shown(page.getByText('No webhook endpoints yet.'))
    const url = `http://127.0.0.1:${receiver.port}/hook?x="><script>alert(2)</script>`
    await page.getByLabel('URL').fill(url)
    await page.getByLabel('Description (optional)').fill(XSS)
    await page.getByRole('checkbox', { name: /key\.revoked/ }).check()
    const response = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/webhooks'))
    await page.getByRole('button', { name: 'Add endpoint' }).click()
    const added = await response
    expect(added.status()).toBe(201)
    expect(added.headers()['cache-control']).toBe('no-store')
    await shown(page.getByRole('heading', { name: 'Copy your signing secret now' }))
    const secret = await page.getByRole('textbox', { name: 'Signing secret' }).inputValue()
    expect(secret).toMatch(/^whsec_/)
    await page.getByRole('link', { name: 'Done' }).click()
    await shown(page.getByRole('heading', { level: 1, name: 'Webhooks', exact: true }))
    const row = page.locator('tr[data-endpoint-id]')
    await shown(row)
    expect(await row.getByText(url, { exact: true }).count()).toBe(1)
    expect(await row.getByText(XSS, { exact: true }).count()).toBe(1)
    expect(await page.content()).not.toContain(secret)
    const endpointId = (await row.getAttribute('data-endpoint-id'))!

    mkdirSync(SCREENSHOTS, { recursive: true })
    await page.screenshot({ path: join(SCREENSHOTS, 'webhooks.png'), fullPage: true })

    await page.getByRole('button', { name: `Send test event to ${endpointId}` }).click()
    await shown(page.getByRole('heading', { level: 1, name: 'Delivery log' }))
    await shown(page.getByText(`Test event queued for ${endpointId}`))
    await receiver.waitFor(1)
    const first = receiver.received[0]!
    const event = new Webhook(secret).verify(first.body, {
      'webhook-id': String(first.headers['webhook-id']),
      'webhook-timestamp': String(first.headers['webhook-timestamp']),
      'webhook-signature': String(first.headers['webhook-signature']),
    }) as { type: string }
    expect(event.type).toBe('webhook.test')
    await waitFor(async () => {
      await page.reload()
      return (await page.getByText(/· 200 · \d+ ms/).count()) === 1
    }, 30_000)
    await page.getByRole('button', { name: `Redeliver ${String(first.headers['webhook-id'])}` }).click()
    await shown(page.getByText('Delivery queued again, with the same webhook-id.'))
    await receiver.waitFor(2)
    expect(receiver.received[1]!.headers['webhook-id']).toBe(first.headers['webhook-id'])
    await waitFor(async () => {
      await page.reload()
      return (await page.getByText(/· 200 · \d+ ms/).count()) === 2
    }, 30_000)
    await page.screenshot({ path: join(SCREENSHOTS, 'webhook-log.png'), fullPage: true })

    // Rotate secret: confirmed on a page that names the endpoint, the new secret shown once.
    await openWebhooks(page)
    await page.getByRole('button', { name: `Rotate secret of ${endpointId}` }).click()
    await page.getByRole('button', { name: 'Rotate secret' }).click()
    await shown(page.getByRole('heading', { name: 'Copy your signing secret now' }))
    const rotated = await page.getByRole('textbox', { name: 'Signing secret' }).inputValue()
    expect(rotated).not.toBe(secret)

    // A URL inside the network is refused with a message, and the form keeps what was typed.
    await openWebhooks(page)
    await page.getByLabel('URL').fill('https://169.254.169.254/latest/meta-data')
    await page.getByRole('button', { name: 'Add endpoint' }).click()
    await shown(page.getByRole('alert'))
    expect(await page.getByRole('alert').textContent()).toBe('The URL must not point at a link-local address.')
    expect(await page.getByLabel('URL').inputValue()).toBe('https://169.254.169.254/latest/meta-data')
    expect(dialogs).toEqual([])

    // CSRF: a foreign origin, or no token, changes nothing.
    const { cookie, csrf } = await session(context, page)
    const foreign = await postForm(
      server,
      `/webhooks/${endpointId}/remove`,
      { _csrf: csrf, confirm: 'yes' },
      {
        cookie,
        origin: 'http://evil.example',
      },
    )
    expect(foreign.status).toBe(403)
    const tokenless = await postForm(
      server,
      `/webhooks/${endpointId}/remove`,
      { confirm: 'yes' },
      {
        cookie,
        origin: server.url,
      },
    )
    expect(tokenless.status).toBe(403)
    const addTokenless = await postForm(
      server,
      '/webhooks',
      { url: 'https://hooks.example/x' },
      {
        cookie,
        origin: server.url,
      },
    )
    expect(addTokenless.status).toBe(403)

    // A viewer sees the endpoint and its log, with no forms, and a change it posts is refused.
    const viewerContext = await browser.context()
    const viewerPage = await viewerContext.newPage()
    await signIn(viewerPage, server, viewer.email, viewer.password)
    await openWebhooks(viewerPage)
    await shown(viewerPage.locator(`tr[data-endpoint-id="${endpointId}"]`))
    expect(await viewerPage.getByRole('button', { name: 'Add endpoint' }).count()).toBe(0)
    expect(await viewerPage.getByRole('button', { name: /Remove|Rotate secret|Send test event/ }).count()).toBe(0)
    await viewerPage.getByRole('link', { name: `Delivery log of ${endpointId}` }).click()
    await shown(viewerPage.getByRole('heading', { level: 1, name: 'Delivery log' }))
    expect(await viewerPage.getByRole('button', { name: /Redeliver/ }).count()).toBe(0)
    const viewerSession = await session(viewerContext, viewerPage)
    const viewerRemove = await postForm(
      server,
      `/webhooks/${endpointId}/remove`,
      { _csrf: viewerSession.csrf, confirm: 'yes' },
      { cookie: viewerSession.cookie, origin: server.url },
    )
    expect(viewerRemove.status).toBe(403)

    // Another tenant's admin: the endpoint does not exist for it.
    const strangerContext = await browser.context()
    const strangerPage = await strangerContext.newPage()
    await signIn(strangerPage, server, stranger.email, stranger.password)
    await openWebhooks(strangerPage)
    await shown(strangerPage.getByText('No webhook endpoints yet.'))
    const peek = await strangerPage.goto(`${server.url}/webhooks/${endpointId}`)
    expect(peek!.status()).toBe(404)
    const strangerSession = await session(strangerContext, strangerPage)
    for (const action of ['remove', 'test', 'rotate-secret']) {
      const refused = await postForm(
        server,
        `/webhooks/${endpointId}/${action}`,
        { _csrf: strangerSession.csrf, confirm: 'yes' },
        { cookie: strangerSession.cookie, origin: server.url },
      )
      expect(refused.status, action).toBe(404)
    }

    // Remove, confirmed by name.
    await openWebhooks(page)
    await page.getByRole('button', { name: `Remove ${endpointId}` }).click()
    await page.getByRole('button', { name: 'Remove endpoint' }).click()
    await shown(page.getByText(`Endpoint ${endpointId} removed.`))
    expect(await page.locator('tr[data-endpoint-id]').count()).toBe(0)
    // Each change is in Activity, by whom.
    await page
      .getByRole('navigation', { name: 'Dashboard' })
      .getByRole('link', { name: 'Activity', exact: true })
      .click()
    await shown(page.getByRole('heading', { level: 1, name: 'Activity' }))
    for (const label of ['Webhook endpoint added', 'Webhook secret rotated', 'Webhook endpoint removed'])
      expect(await page.getByText(label, { exact: true }).count(), label).toBe(1)
    expect(server.stdout()).not.toContain(secret.slice(6))
    expect(server.stdout()).not.toContain(rotated.slice(6))
    await Promise.all([context.close(), viewerContext.close(), strangerContext.close()])
  })
})
