import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { SqliteKeyStore } from '@saiku/sqlite'
import type { BrowserContext, Locator, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { hasChromium, launchBrowser, type Browser } from './browser.js'
import {
  cli,
  cliJson,
  exampleDir,
  processTimeout,
  repoRoot,
  startServer,
  tempDatabase,
  waitFor,
  type RunningServer,
  type TempDir,
} from './helpers.js'

// Members on the dashboard, driven in Chromium against the real server process: invitations (a link shown once,
// used once, for 24 hours), role changes and removals that reach open sessions at once, the last admin, a
// viewer's read-only page, CSRF, markup in what people type, tenants kept apart; and the phone layout.

vi.setConfig({ testTimeout: processTimeout(4), hookTimeout: processTimeout(4) })

const browserAvailable = hasChromium()
// Outside what git tracks; `pnpm docs:screenshots` copies them to docs/dashboard/.
const SCREENSHOTS = join(repoRoot, '.cache/screenshots/dashboard')

interface Credentials {
  readonly email: string
  readonly password: string
}

async function shown(locator: Locator): Promise<void> {
  await locator.first().waitFor({ state: 'visible', timeout: 30_000 })
}

async function heading(page: Page, name: string): Promise<void> {
  await shown(page.getByRole('heading', { level: 1, name, exact: true }))
}

/** The demo member the banner prints after the demo key, in a later write: waited for on a loaded machine. */
async function demoMember(server: RunningServer): Promise<Credentials> {
  const member = /email:\s+(\S+)\n\s+password:\s+(\S+)\n/
  await waitFor(() => member.test(server.stderr()), 30_000).catch(() => {})
  const match = server.stderr().match(member)
  if (match === null) throw new Error(`no demo member in the banner:\n${server.stderr()}`)
  return { email: match[1]!, password: match[2]! }
}

async function cliWithInput(args: string[], env: Record<string, string>, input: string) {
  const child = spawn(process.execPath, [join(exampleDir, 'bin/saiku.mjs'), ...args], {
    cwd: repoRoot,
    env: { ...process.env, NODE_OPTIONS: '--conditions=@saiku/source', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  child.stdout.resume()
  child.stdin.end(input)
  const [code] = (await once(child, 'exit')) as [number]
  if (code !== 0) throw new Error(`saiku ${args.join(' ')} exited ${code}: ${stderr}`)
}

async function signIn(page: Page, server: RunningServer, who: Credentials): Promise<void> {
  await page.goto(`${server.url}/sign-in`)
  await page.getByLabel('Email').fill(who.email)
  await page.getByLabel('Password').fill(who.password)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await heading(page, 'Overview')
}

/** The session cookie and the CSRF token of a signed-in page, for requests made outside the browser. */
async function sessionOf(context: BrowserContext, page: Page): Promise<{ cookie: string; csrf: string }> {
  const session = (await context.cookies()).find((c) => c.name === 'saiku_session')
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

async function openMembers(page: Page): Promise<void> {
  await page.getByRole('navigation', { name: 'Dashboard' }).getByRole('link', { name: 'Members', exact: true }).click()
  await heading(page, 'Members')
}

/** Invites from the Members page; returns the sign-up link read from the page that shows it once. */
async function invite(page: Page, email: string, role: 'admin' | 'viewer'): Promise<string> {
  await openMembers(page)
  await page.getByLabel('Email').fill(email)
  await page.getByRole('radio', { name: role === 'admin' ? /^Admin/ : /^Viewer/ }).check()
  const response = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/members/invite'))
  await page.getByRole('button', { name: 'Invite', exact: true }).click()
  const answered = await response
  expect(answered.status()).toBe(201)
  expect(answered.headers()['cache-control']).toBe('no-store')
  await shown(page.getByRole('heading', { name: 'Copy the sign-up link now' }))
  const link = await page.getByRole('textbox', { name: 'Sign-up link' }).inputValue()
  expect(link).toMatch(/\/join\?token=[\w-]{43}$/)
  expect(page.url()).not.toContain(link.split('=')[1]!)
  return link
}

/** Opens a sign-up link in a fresh browser profile and sets the password; returns the status of the answer. */
async function signUp(browser: Browser, link: string, password: string): Promise<{ status: number; page: Page }> {
  const context = await browser.context()
  const page = await context.newPage()
  await page.goto(link)
  await heading(page, 'Join your team')
  await page.getByLabel('Password', { exact: true }).fill(password)
  await page.getByLabel('Password again').fill(password)
  const response = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/join'))
  await page.getByRole('button', { name: 'Create account' }).click()
  const status = (await response).status()
  await shown(page.getByRole('heading', { level: 1 }))
  return { status, page }
}

function memberRow(page: Page, email: string): Locator {
  return page
    .getByRole('table', { name: 'Members' })
    .getByRole('row')
    .filter({ has: page.getByRole('cell', { name: email }) })
}

async function memberId(server: RunningServer, env: Record<string, string>, tenant: string, email: string) {
  const members = await cliJson<{ memberId: string; email: string; role: string }[]>(
    ['members', 'list', '--tenant', tenant],
    env,
  )
  const found = members.find((m) => m.email === email)
  if (found === undefined) throw new Error(`${email} is not a member of ${tenant} on ${server.url}`)
  return found
}

describe.skipIf(!browserAvailable)('members on the dashboard', { timeout: 300_000 }, () => {
  let db: TempDir
  let env: Record<string, string>
  let server: RunningServer
  let browser: Browser
  let admin: Credentials
  let adminContext: BrowserContext
  let adminPage: Page
  const dialogs: string[] = []
  const globexAdmin = { email: 'ops@globex.example', password: 'globex-password-123' }

  beforeAll(async () => {
    db = tempDatabase()
    env = { DATABASE_URL: db.databaseUrl, REDIS_URL: '', SAIKU_DATA_DIR: db.path }
    server = await startServer(env)
    admin = await demoMember(server)
    await cliJson(['tenants', 'create', '--slug', 'globex', '--tier', 'team', '--subscription', 'active'], env)
    await cliWithInput(
      ['members', 'add', '--tenant', 'globex', '--email', globexAdmin.email, '--role', 'admin', '--password-stdin'],
      env,
      globexAdmin.password,
    )
    browser = await launchBrowser()
    adminContext = await browser.context({ viewport: { width: 1280, height: 900 } })
    adminPage = await adminContext.newPage()
    adminPage.on('dialog', (dialog) => {
      dialogs.push(dialog.message())
      void dialog.accept()
    })
    await signIn(adminPage, server, admin)
  })
  afterAll(async () => {
    expect(dialogs).toEqual([])
    await browser?.close()
    await server?.stop()
    db?.remove()
  })

  it('refuses to remove or demote the last admin: no button, a 409 for a forged form, and the CLI refuses too', async () => {
    await openMembers(adminPage)
    const row = memberRow(adminPage, admin.email)
    await shown(row.getByText('The last admin'))
    expect(await row.getByRole('button').count()).toBe(0)
    const me = await memberId(server, env, 'acme', admin.email)
    const { cookie, csrf } = await sessionOf(adminContext, adminPage)
    const headers = { cookie, origin: server.url }
    const demote = await postForm(server, `/members/${me.memberId}/role`, { _csrf: csrf, role: 'viewer' }, headers)
    expect(demote.status).toBe(409)
    expect(await demote.text()).toContain('is the last admin of the tenant, so they cannot be made a viewer')
    const remove = await postForm(server, `/members/${me.memberId}/remove`, { _csrf: csrf, confirm: 'yes' }, headers)
    expect(remove.status).toBe(409)
    expect(await remove.text()).toContain('is the last admin of the tenant, so they cannot be removed')

    const removed = await cli(['members', 'remove', '--email', admin.email, '--json'], env)
    expect(removed.code).toBe(1)
    expect(JSON.parse(removed.stderr)).toMatchObject({ error: 'conflict' })
    const demoted = await cli(['members', 'set-role', '--email', admin.email, '--role', 'viewer'], env)
    expect(demoted.code).toBe(1)
    expect(demoted.stderr).toContain('is the last admin of the tenant')
    expect((await memberId(server, env, 'acme', admin.email)).role).toBe('admin')
    // Still signed in, still an admin.
    await adminPage.reload()
    await heading(adminPage, 'Members')
    await shown(adminPage.getByRole('button', { name: 'Invite', exact: true }))
  })

  it('invites by email: the link is shown once, works once, and the new member signs in with the role', async () => {
    const email = 'newcomer@acme.example'
    const link = await invite(adminPage, email, 'viewer')
    const token = new URL(link).searchParams.get('token')!
    await adminPage.screenshot({ path: join(SCREENSHOTS, 'invitation-created.png') })
    // The Members page lists the invitation, never its link.
    await adminPage.getByRole('link', { name: 'Done' }).click()
    await heading(adminPage, 'Members')
    const pending = adminPage
      .getByRole('table', { name: 'Pending invitations' })
      .getByRole('row')
      .filter({ hasText: email })
    await shown(pending)
    expect(await pending.textContent()).toContain('viewer')
    expect(await adminPage.content()).not.toContain(token)
    // The request log leaves the query (and so the token) out.
    expect(JSON.stringify(server.logs)).not.toContain(token)

    const { status, page } = await signUp(browser, link, 'newcomer-password-1')
    expect(status).toBe(201)
    await heading(page, 'Account created')
    await page.screenshot({ path: join(SCREENSHOTS, 'join-done.png') })
    // Once only: the link again, in the browser and over HTTP.
    await page.goto(link)
    await heading(page, 'Invitation not valid')
    const again = await postForm(
      server,
      '/join',
      { token, password: 'another-password-1', confirm: 'another-password-1' },
      { origin: server.url },
    )
    expect(again.status).toBe(404)

    await signIn(page, server, { email, password: 'newcomer-password-1' })
    await shown(page.getByText('viewer', { exact: true }))
    await openMembers(adminPage)
    expect(await memberRow(adminPage, email).textContent()).toContain('viewer')
    expect(await adminPage.getByRole('table', { name: 'Pending invitations' }).count()).toBe(0)
    await adminPage.getByRole('navigation', { name: 'Dashboard' }).getByRole('link', { name: 'Activity' }).click()
    await heading(adminPage, 'Activity')
    for (const label of ['Member invited', 'Member joined'])
      expect(await adminPage.getByRole('row').filter({ hasText: label }).filter({ hasText: email }).count()).toBe(1)
    await page.context().close()
  })

  it('lets one of two uses of a link at once make the account, and no use after 24 hours', async () => {
    const link = await invite(adminPage, 'racer@acme.example', 'viewer')
    const token = new URL(link).searchParams.get('token')!
    const use = () =>
      postForm(
        server,
        '/join',
        { token, password: 'racer-password-12', confirm: 'racer-password-12' },
        { origin: server.url },
      )
    const statuses = (await Promise.all([use(), use(), use(), use(), use(), use()])).map((r) => r.status)
    // One makes the account; each other one is told the link is used (404) or being used (409), or to wait (503).
    expect(statuses.filter((s) => s === 201)).toHaveLength(1)
    for (const status of statuses.filter((s) => s !== 201)) expect([404, 409, 503]).toContain(status)
    const racers = await cliJson<{ email: string }[]>(['members', 'list', '--tenant', 'acme'], env)
    expect(racers.filter((m) => m.email === 'racer@acme.example')).toHaveLength(1)

    // An invitation past its 24 hours: its expiry moved back in the database, as time would.
    const late = await invite(adminPage, 'late@acme.example', 'admin')
    const store = new SqliteKeyStore(join(db.path, 'saiku.db'), { watchIntervalMs: 0 })
    try {
      const moved = store.db
        .prepare("UPDATE saiku_invitations SET expires_at = ? WHERE email = 'late@acme.example'")
        .run(Date.now() - 1)
      expect(moved.changes).toBe(1)
    } finally {
      store.close()
    }
    const context = await browser.context()
    const page = await context.newPage()
    const opened = await page.goto(late)
    expect(opened?.status()).toBe(404)
    await heading(page, 'Invitation not valid')
    const lateToken = new URL(late).searchParams.get('token')!
    const used = await postForm(
      server,
      '/join',
      { token: lateToken, password: 'late-password-123', confirm: 'late-password-123' },
      { origin: server.url },
    )
    expect(used.status).toBe(404)
    const members = await cliJson<{ email: string }[]>(['members', 'list', '--tenant', 'acme'], env)
    expect(members.map((m) => m.email)).not.toContain('late@acme.example')
    await context.close()
  })

  it('asks for the same password rules as everywhere, and the same password twice', async () => {
    const link = await invite(adminPage, 'careful@acme.example', 'viewer')
    const context = await browser.context()
    const page = await context.newPage()
    await page.goto(link)
    await page.getByLabel('Password', { exact: true }).fill('careful-password-1')
    await page.getByLabel('Password again').fill('careful-password-2')
    await page.getByRole('button', { name: 'Create account' }).click()
    await shown(page.getByRole('alert').filter({ hasText: 'The two passwords differ.' }))
    await page.screenshot({ path: join(SCREENSHOTS, 'join.png') })
    const token = new URL(link).searchParams.get('token')!
    const short = await postForm(
      server,
      '/join',
      { token, password: 'short', confirm: 'short' },
      { origin: server.url },
    )
    expect(short.status).toBe(400)
    expect(await short.text()).toContain('A password needs at least 12 characters.')
    // Neither used the link up.
    const { status } = await signUp(browser, link, 'careful-password-1')
    expect(status).toBe(201)
    await context.close()
  })

  it('changes a role, and the member’s open session has it at the next request', async () => {
    const colleague = { email: 'colleague@acme.example', password: 'colleague-password-1' }
    const { status } = await signUp(browser, await invite(adminPage, colleague.email, 'viewer'), colleague.password)
    expect(status).toBe(201)
    const context = await browser.context()
    const page = await context.newPage()
    await signIn(page, server, colleague)
    await page.goto(`${server.url}/api-keys`)
    expect(await page.getByRole('button', { name: 'Create key' }).count()).toBe(0)

    await openMembers(adminPage)
    await memberRow(adminPage, colleague.email)
      .getByRole('button', { name: `Make ${colleague.email} an admin` })
      .click()
    await shown(adminPage.getByRole('status').filter({ hasText: `${colleague.email} is now admin.` }))
    await page.reload()
    await shown(page.getByRole('button', { name: 'Create key' }))
    await adminPage.screenshot({ path: join(SCREENSHOTS, 'members.png'), fullPage: true })

    // Two admins now: the demo admin may make themselves a viewer, and the colleague may undo it.
    await memberRow(adminPage, colleague.email)
      .getByRole('button', { name: `Make ${colleague.email} a viewer` })
      .click()
    await shown(adminPage.getByRole('status').filter({ hasText: `${colleague.email} is now viewer.` }))
    const { cookie, csrf } = await sessionOf(context, page)
    const refused = await postForm(
      server,
      '/api-keys',
      { _csrf: csrf, label: 'after-demotion' },
      { cookie, origin: server.url },
    )
    expect(refused.status).toBe(403)
    const activity = await cliJson<{ action: string; target: string | null; actor: string }[]>(
      ['activity', '--tenant', 'acme'],
      env,
    )
    expect(
      activity.filter((e) => e.action === 'member.role_changed' && e.actor === admin.email).map((e) => e.target),
    ).toEqual([`${colleague.email}: admin → viewer`, `${colleague.email}: viewer → admin`])

    // The CLI changes roles by the same rule, and its change reaches the open session too.
    expect(await cliJson(['members', 'set-role', '--email', colleague.email, '--role', 'admin'], env)).toEqual({
      email: colleague.email,
      role: 'admin',
      changed: true,
    })
    expect(await cliJson(['members', 'set-role', '--email', colleague.email, '--role', 'admin'], env)).toMatchObject({
      changed: false,
    })
    await page.goto(`${server.url}/api-keys`)
    await shown(page.getByRole('button', { name: 'Create key' }))
    await context.close()
  })

  it('removes a member after a confirmation that names them, and their session ends at once', async () => {
    const leaver = { email: 'leaver@acme.example', password: 'leaver-password-12' }
    await signUp(browser, await invite(adminPage, leaver.email, 'admin'), leaver.password)
    const context = await browser.context()
    const page = await context.newPage()
    await signIn(page, server, leaver)

    await openMembers(adminPage)
    await memberRow(adminPage, leaver.email)
      .getByRole('button', { name: `Remove ${leaver.email}` })
      .click()
    await heading(adminPage, `Remove ${leaver.email}?`)
    await adminPage.getByRole('button', { name: 'Remove member' }).click()
    await shown(adminPage.getByRole('status').filter({ hasText: `${leaver.email} is removed` }))
    expect(await memberRow(adminPage, leaver.email).count()).toBe(0)
    await page.reload()
    await heading(page, 'Sign in')
    const activity = await cliJson<{ action: string; target: string | null }[]>(['activity', '--tenant', 'acme'], env)
    expect(activity.filter((e) => e.action === 'member.removed').map((e) => e.target)).toContain(leaver.email)
    await context.close()
  })

  it('shows a viewer the members read-only, and refuses every change a viewer forges (403), changing nothing', async () => {
    const viewer = { email: 'reader@acme.example', password: 'reader-password-12' }
    await signUp(browser, await invite(adminPage, viewer.email, 'viewer'), viewer.password)
    const pendingLink = await invite(adminPage, 'pending@acme.example', 'viewer')
    const context = await browser.context()
    const page = await context.newPage()
    await signIn(page, server, viewer)
    await openMembers(page)
    await shown(memberRow(page, admin.email))
    await shown(page.getByRole('table', { name: 'Pending invitations' }).getByText('pending@acme.example'))
    expect(await page.getByRole('button').filter({ hasNotText: 'Sign out' }).count()).toBe(0)
    expect(await page.getByRole('heading', { name: 'Invite a member' }).count()).toBe(0)
    await page.screenshot({ path: join(SCREENSHOTS, 'members-viewer.png'), fullPage: true })

    const { cookie, csrf } = await sessionOf(context, page)
    const headers = { cookie, origin: server.url }
    const adminId = (await memberId(server, env, 'acme', admin.email)).memberId
    const forged = [
      await postForm(server, '/members/invite', { _csrf: csrf, email: 'sneaky@acme.example', role: 'admin' }, headers),
      await postForm(server, `/members/${adminId}/role`, { _csrf: csrf, role: 'viewer' }, headers),
      await postForm(server, `/members/${adminId}/remove`, { _csrf: csrf, confirm: 'yes' }, headers),
    ]
    for (const response of forged) {
      expect(response.status).toBe(403)
      expect(await response.text()).toContain('only an admin can change them')
    }
    const members = await cliJson<{ email: string; role: string }[]>(['members', 'list', '--tenant', 'acme'], env)
    expect(members.find((m) => m.email === admin.email)?.role).toBe('admin')
    await page.reload()
    expect(await page.getByText('sneaky@acme.example').count()).toBe(0)
    // The pending invitation still works.
    expect((await fetch(pendingLink)).status).toBe(200)
    await context.close()
  })

  it('refuses a cross-site or tokenless member form (403), and a cross-site sign-up, changing nothing', async () => {
    const { cookie, csrf } = await sessionOf(adminContext, adminPage)
    const adminId = (await memberId(server, env, 'acme', admin.email)).memberId
    const evil = { cookie, origin: 'https://evil.example' }
    expect(
      (await postForm(server, '/members/invite', { _csrf: csrf, email: 'x@acme.example', role: 'admin' }, evil)).status,
    ).toBe(403)
    expect(
      (
        await postForm(
          server,
          '/members/invite',
          { email: 'y@acme.example', role: 'admin' },
          { cookie, origin: server.url },
        )
      ).status,
    ).toBe(403)
    expect(
      (await postForm(server, `/members/${adminId}/role`, { role: 'viewer' }, { cookie, origin: server.url })).status,
    ).toBe(403)
    const link = await invite(adminPage, 'target@acme.example', 'admin')
    const token = new URL(link).searchParams.get('token')!
    const crossSite = await postForm(
      server,
      '/join',
      { token, password: 'attacker-password-1', confirm: 'attacker-password-1' },
      { origin: 'https://evil.example' },
    )
    expect(crossSite.status).toBe(403)
    const members = await cliJson<{ email: string }[]>(['members', 'list', '--tenant', 'acme'], env)
    expect(members.map((m) => m.email)).not.toEqual(
      expect.arrayContaining(['x@acme.example', 'y@acme.example', 'target@acme.example']),
    )
    expect((await fetch(link)).status).toBe(200)
  })

  it('shows what people type as text: markup in an email is refused, quoted, and runs nothing', async () => {
    const markup = '<img src=x onerror=alert(1)>@acme.example'
    await openMembers(adminPage)
    await adminPage.getByLabel('Email').evaluate((input) => input.setAttribute('type', 'text'))
    await adminPage.getByLabel('Email').fill(markup)
    await adminPage.getByRole('button', { name: 'Invite', exact: true }).click()
    const alert = adminPage.getByRole('alert')
    await shown(alert)
    expect(await alert.textContent()).toContain(markup)
    expect(await adminPage.locator('main img').count()).toBe(0)
    // An address the rules allow that HTML would read: shown as typed, everywhere.
    const odd = "o'brien&co@acme.example"
    await invite(adminPage, odd, 'viewer')
    await openMembers(adminPage)
    expect(
      await adminPage
        .getByRole('table', { name: 'Pending invitations' })
        .getByRole('cell', { name: odd, exact: true })
        .count(),
    ).toBe(1)
  })

  it('keeps tenants apart: another tenant’s member or invitation is answered as a missing one', async () => {
    const context = await browser.context()
    const page = await context.newPage()
    await signIn(page, server, globexAdmin)
    await openMembers(page)
    expect(await memberRow(page, admin.email).count()).toBe(0)
    expect(await page.getByText('@acme.example').count()).toBe(0)
    const { cookie, csrf } = await sessionOf(context, page)
    const headers = { cookie, origin: server.url }
    const acmeAdmin = (await memberId(server, env, 'acme', admin.email)).memberId
    const theirs = await postForm(server, `/members/${acmeAdmin}/remove`, { _csrf: csrf, confirm: 'yes' }, headers)
    const missing = await postForm(
      server,
      '/members/00000000-0000-4000-8000-000000000000/remove',
      { _csrf: csrf, confirm: 'yes' },
      headers,
    )
    expect(theirs.status).toBe(404)
    expect(await theirs.text()).toBe(await missing.text())
    const role = await postForm(server, `/members/${acmeAdmin}/role`, { _csrf: csrf, role: 'viewer' }, headers)
    expect(role.status).toBe(404)
    expect((await memberId(server, env, 'acme', admin.email)).role).toBe('admin')

    // An acme invitation's ID, from the acme admin's page, withdrawn from globex: missing too.
    await invite(adminPage, 'isolated@acme.example', 'viewer')
    await openMembers(adminPage)
    const action = await adminPage
      .getByRole('table', { name: 'Pending invitations' })
      .getByRole('row')
      .filter({ hasText: 'isolated@acme.example' })
      .locator('form')
      .getAttribute('action')
    const withdrawn = await postForm(server, action!, { _csrf: csrf }, headers)
    expect(withdrawn.status).toBe(404)
    await adminPage.reload()
    await shown(adminPage.getByRole('table', { name: 'Pending invitations' }).getByText('isolated@acme.example'))
    // Its own admin can.
    const row = adminPage
      .getByRole('table', { name: 'Pending invitations' })
      .getByRole('row')
      .filter({ hasText: 'isolated@acme.example' })
    await row.getByRole('button', { name: 'Withdraw the invitation of isolated@acme.example' }).click()
    await shown(
      adminPage.getByRole('status').filter({ hasText: 'The invitation of isolated@acme.example is withdrawn' }),
    )
    await context.close()
  })

  it('describes each permission in one line on the Create key form', async () => {
    await adminPage.goto(`${server.url}/api-keys/new`)
    await heading(adminPage, 'Create key')
    const described = {
      'keys:read': "List the tenant's API keys (IDs, labels, permissions; never a secret).",
      'keys:write': 'Create, edit, rotate and revoke API keys, never granting more than this key holds.',
      'billing:write': 'Start the trial, change the plan, and cancel or resume the subscription.',
    }
    for (const [name, description] of Object.entries(described)) {
      const box = adminPage.getByRole('checkbox', { name })
      const id = await box.getAttribute('aria-describedby')
      expect(await adminPage.locator(`[id="${id}"]`).textContent()).toBe(description)
      await shown(adminPage.getByText(description, { exact: true }))
    }
    await adminPage.screenshot({ path: join(SCREENSHOTS, 'key-new.png'), fullPage: true })
  })

  it('on a phone, without JavaScript: the menu is folded, the page starts in the first screen, the secret reads in full', async () => {
    mkdirSync(SCREENSHOTS, { recursive: true })
    const height = 844
    const context = await browser.context({
      viewport: { width: 390, height },
      isMobile: true,
      hasTouch: true,
      deviceScaleFactor: 2,
      javaScriptEnabled: false,
    })
    const page = await context.newPage()
    await signIn(page, server, admin)
    const navigation = page.getByRole('navigation', { name: 'Dashboard' })
    // Each of the three is checked softly, so a failure names every one that does not hold.
    expect.soft(await navigation.count(), 'navigation folded').toBe(0)
    // The heading starts in the top fifth of the screen, under one bar.
    const top = await page
      .getByRole('heading', { level: 1, name: 'Overview' })
      .evaluate((h) => h.getBoundingClientRect().top)
    expect.soft(top, 'top of the page heading').toBeLessThan(height / 5)

    await page.goto(`${server.url}/api-keys/new`)
    await page.getByLabel('Label').fill('phone-key')
    await page.getByRole('button', { name: 'Create key' }).click()
    await shown(page.getByRole('heading', { name: 'Copy your secret key now' }))
    const secretBox = page.getByRole('textbox', { name: 'Secret key' })
    expect(await secretBox.inputValue()).toMatch(/^sk_live_\w+$/)
    // Nothing of it is clipped: the box is as wide and as tall as its text, and inside the screen.
    const fit = await secretBox.evaluate((box) => ({
      hiddenWidth: Math.max(0, box.scrollWidth - box.clientWidth),
      hiddenHeight: Math.max(0, box.scrollHeight - box.clientHeight),
      inside: box.getBoundingClientRect().right <= 390,
    }))
    expect.soft(fit, 'the secret box').toEqual({ hiddenWidth: 0, hiddenHeight: 0, inside: true })
    await page.screenshot({ path: join(SCREENSHOTS, 'key-created-phone.png'), fullPage: true })

    await page.getByText('Menu', { exact: true }).click()
    await shown(navigation)
    await page.screenshot({ path: join(SCREENSHOTS, 'menu-phone.png') })
    await navigation.getByRole('link', { name: 'Members', exact: true }).click()
    await heading(page, 'Members')
    await page.screenshot({ path: join(SCREENSHOTS, 'members-phone.png'), fullPage: true })
    const overflow = await page.evaluate<number>(
      'document.documentElement.scrollWidth - document.documentElement.clientWidth',
    )
    expect(overflow).toBeLessThanOrEqual(0)
    await context.close()
  })
})
