import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { BrowserContext, Locator, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { totpCode } from '../src/dashboard/shared/two-factor.js'
import { hasChromium, launchBrowser, type Browser } from './browser.js'
import { startInProcessDashboard, type InProcessDashboard } from './dashboard-http.js'
import { repoRoot } from './helpers.js'

// Members' account security in Chromium, by role and accessible name: two-factor set-up and sign-in with
// codes made here, a recovery code used once, re-authentication expiring on the dashboard's clock (moved
// on, never slept), the sessions list and its End session, and a password change ending the other sessions.

const browserAvailable = hasChromium()
const SCREENSHOTS = join(repoRoot, '.cache/screenshots/dashboard')
const PASSWORD = 'the-right-password-1'
const NEW_PASSWORD = 'a-brand-new-password-2'
const STEP_MS = 30_000
const XSS = '<img src=x onerror=alert(1)>'

async function shown(locator: Locator): Promise<void> {
  await locator.first().waitFor({ state: 'visible', timeout: 30_000 })
}

/** The page's HTML once it stops navigating (Back may land on an error page, or resubmit a form). */
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

describe.skipIf(!browserAvailable)('account security in a browser', { timeout: 180_000 }, () => {
  let d: InProcessDashboard
  let browser: Browser
  const contexts: BrowserContext[] = []
  const dialogs: string[] = []
  const admin = 'ada@acme.example'

  beforeAll(async () => {
    d = await startInProcessDashboard()
    await d.addMember(admin, PASSWORD)
    browser = await launchBrowser()
  }, 120_000)
  afterAll(async () => {
    await browser?.close()
    await d?.close()
  })

  async function newPage(userAgent?: string): Promise<Page> {
    const context = await browser.context({
      viewport: { width: 1280, height: 860 },
      ...(userAgent ? { userAgent } : {}),
    })
    contexts.push(context)
    const page = await context.newPage()
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message())
      void dialog.accept()
    })
    return page
  }

  const shoot = async (page: Page, file: string) => {
    mkdirSync(SCREENSHOTS, { recursive: true })
    await page.screenshot({ path: join(SCREENSHOTS, file), fullPage: true })
  }

  async function passwordStep(page: Page, email: string, password = PASSWORD): Promise<void> {
    await page.goto(`${d.url}/sign-in`)
    await page.getByLabel('Email').fill(email)
    await page.getByLabel('Password').fill(password)
    await page.getByRole('button', { name: 'Sign in' }).click()
  }

  async function codeStep(page: Page, code: string): Promise<void> {
    await shown(page.getByRole('heading', { level: 1, name: 'Two-factor sign-in' }))
    await page.getByLabel('Code').fill(code)
    await page.getByRole('button', { name: 'Verify' }).click()
  }

  async function signOut(page: Page): Promise<void> {
    await page.getByRole('button', { name: 'Sign out' }).click()
    await shown(page.getByText('You are signed out.'))
  }

  let secret = ''
  let recoveryCodes: string[] = []

  it('sets up two-factor from the Account page: scan, confirm a code, ten recovery codes shown once', async () => {
    const page = await newPage()
    await passwordStep(page, admin)
    await shown(page.getByRole('heading', { level: 1, name: 'Overview' }))
    await page.getByRole('link', { name: 'Account', exact: true }).click()
    await shown(page.getByRole('heading', { level: 1, name: 'Account' }))
    await page.getByRole('link', { name: 'Set up two-factor' }).click()
    await shown(page.getByRole('heading', { level: 1, name: 'Set up two-factor' }))
    await shown(page.getByRole('img', { name: 'QR code of the two-factor secret for Saiku Cloud' }))
    const qrWidth = await page
      .getByRole('img', { name: 'QR code of the two-factor secret for Saiku Cloud' })
      .evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth)
    expect(qrWidth).toBeGreaterThan(0) // the data URL decoded into a picture
    secret = (await page.getByLabel('Two-factor secret').innerText()).replace(/\s/g, '')
    expect(secret).toMatch(/^[A-Z2-7]{32}$/)
    await shoot(page, 'two-factor-setup.png')

    await page.getByLabel('Code').fill('000000' === totpCode(secret, d.now()) ? '111111' : '000000')
    await page.getByRole('button', { name: 'Turn on two-factor' }).click()
    await shown(page.getByRole('alert').filter({ hasText: 'That code is not right.' }))
    await page.getByLabel('Code').fill(totpCode(secret, d.now()))
    await page.getByRole('button', { name: 'Turn on two-factor' }).click()
    await shown(page.getByRole('heading', { level: 1, name: 'Save your recovery codes' }))
    recoveryCodes = await page.getByRole('list', { name: 'Recovery codes' }).getByRole('listitem').allInnerTexts()
    expect(recoveryCodes).toHaveLength(10)
    for (const code of recoveryCodes) expect(code).toMatch(/^[a-z2-9]{5}-[a-z2-9]{5}$/)
    await shoot(page, 'recovery-codes.png')
    await page.getByRole('link', { name: 'I saved them, continue' }).click()
    await shown(page.getByText('10 recovery codes left'))
    // Shown once: neither the secret nor a code is on any page now.
    for (const path of ['/account', '/account/two-factor']) {
      await page.goto(`${d.url}${path}`)
      const html = await page.content()
      expect(html).not.toContain(secret.slice(0, 8))
      for (const code of recoveryCodes) expect(html).not.toContain(code)
    }
    // Back to the page that showed them: it was never stored (no-store), so the browser cannot show it again.
    await page.goBack().catch(() => null)
    await page.goBack().catch(() => null)
    expect(await settledContent(page)).not.toContain(recoveryCodes[0]!)
  })

  it('asks for the code after the password, and takes a recovery code once', async () => {
    d.advance(STEP_MS)
    const page = await newPage()
    await passwordStep(page, admin)
    await shown(page.getByRole('heading', { level: 1, name: 'Two-factor sign-in' }))
    await shoot(page, 'sign-in-code.png')
    // No page opens before the code.
    await page.goto(`${d.url}/api-keys`)
    await codeStep(page, totpCode(secret, d.now()))
    await shown(page.getByRole('heading', { level: 1, name: 'Overview' }))
    await signOut(page)

    await passwordStep(page, admin)
    await codeStep(page, recoveryCodes[0]!)
    await shown(page.getByRole('heading', { level: 1, name: 'Account' }))
    await shown(page.getByRole('status').filter({ hasText: '9 recovery codes are left' }))
    await signOut(page)
    await passwordStep(page, admin)
    await codeStep(page, recoveryCodes[0]!)
    await shown(page.getByRole('alert').filter({ hasText: 'Incorrect code. 4 tries left.' }))
    await codeStep(page, recoveryCodes[1]!)
    await shown(page.getByRole('status').filter({ hasText: '8 recovery codes are left' }))
  })

  it('asks for the password and code again before a live key once the last check is 10 minutes old', async () => {
    d.advance(STEP_MS)
    const page = await newPage()
    await passwordStep(page, admin)
    await codeStep(page, totpCode(secret, d.now()))
    await shown(page.getByRole('heading', { level: 1, name: 'Overview' }))
    d.advance(10 * 60_000 + 1_000)
    await page.getByRole('navigation', { name: 'Dashboard' }).getByRole('link', { name: 'API keys' }).click()
    await page.getByRole('button', { name: 'Create key' }).click()
    await page.getByLabel('Label').fill(XSS)
    await page.getByRole('button', { name: 'Create key' }).click()
    await shown(page.getByRole('heading', { level: 1, name: 'Confirm access' }))
    await shoot(page, 'confirm-access.png')
    await page.getByLabel('Password').fill(PASSWORD)
    await page.getByLabel('Code').fill(totpCode(secret, d.now()))
    await page.getByRole('button', { name: 'Confirm' }).click()
    await shown(page.getByRole('heading', { name: 'Copy your secret key now' }))
    // The label typed before the confirmation is the key's, as text.
    await shown(page.getByText(XSS, { exact: true }))
    // Reused: a second live key within the 10 minutes goes straight through.
    d.advance(5 * 60_000)
    await page.goto(`${d.url}/api-keys/new`)
    await page.getByLabel('Label').fill('second')
    await page.getByRole('button', { name: 'Create key' }).click()
    await shown(page.getByRole('heading', { name: 'Copy your secret key now' }))
    expect(dialogs).toEqual([])
  })

  it('lists the sessions with device and address, ends another one, and a password change ends the rest', async () => {
    d.advance(STEP_MS)
    const here = await newPage()
    await passwordStep(here, admin)
    await codeStep(here, totpCode(secret, d.now()))
    await shown(here.getByRole('heading', { level: 1, name: 'Overview' }))
    d.advance(STEP_MS)
    const phone = await newPage(`Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Safari/604.1 ${XSS}`)
    await passwordStep(phone, admin)
    await codeStep(phone, totpCode(secret, d.now()))
    await shown(phone.getByRole('heading', { level: 1, name: 'Overview' }))

    await here.goto(`${d.url}/account`)
    const sessions = here.getByRole('table', { name: 'Your sessions' })
    await shown(sessions.getByRole('row').filter({ hasText: 'This session' }))
    const phoneRow = sessions.getByRole('row').filter({ hasText: 'Safari on iOS' })
    await shown(phoneRow)
    await shown(phoneRow.getByRole('cell', { name: '127.0.0.1' }))
    await shoot(here, 'account.png')
    await phoneRow.getByRole('button', { name: 'End session' }).click()
    await shown(here.getByRole('status').filter({ hasText: 'Session ended: Safari on iOS, 127.0.0.1.' }))
    await phone.reload()
    await shown(phone.getByRole('heading', { level: 1, name: 'Sign in' }))

    // A third browser; then the password changes in the first: the third is signed out, the first stays.
    d.advance(STEP_MS)
    const third = await newPage()
    await passwordStep(third, admin)
    await codeStep(third, totpCode(secret, d.now()))
    await shown(third.getByRole('heading', { level: 1, name: 'Overview' }))
    await here.goto(`${d.url}/account`)
    await here.getByLabel('Current password').fill(PASSWORD)
    await here.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD)
    await here.getByLabel('Confirm new password').fill(NEW_PASSWORD)
    await here.getByRole('button', { name: 'Change password' }).click()
    await shown(
      here.getByRole('status').filter({ hasText: 'Password changed. Every other session of yours was ended.' }),
    )
    expect(await here.getByRole('table', { name: 'Your sessions' }).getByRole('row').count()).toBe(2) // head + this one
    await third.reload()
    await shown(third.getByRole('heading', { level: 1, name: 'Sign in' }))
    expect(dialogs).toEqual([])
  })

  it('shows a viewer the Account page without the tenant rule', async () => {
    const viewer = 'vic@acme.example'
    await d.addMember(viewer, PASSWORD, 'viewer')
    const page = await newPage()
    await passwordStep(page, viewer)
    await page.getByRole('link', { name: 'Account', exact: true }).click()
    await shown(page.getByRole('heading', { level: 1, name: 'Account' }))
    expect(await page.getByRole('button', { name: /Require two-factor/ }).count()).toBe(0)
  })
})
