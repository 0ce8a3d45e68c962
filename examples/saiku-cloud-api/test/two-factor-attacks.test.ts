import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { totpCode } from '../src/dashboard/shared/two-factor.js'
import {
  Client,
  csrfOf,
  recoveryCodesOf,
  secretOf,
  startInProcessDashboard,
  type InProcessDashboard,
} from './dashboard-http.js'

// Regressions of attacks on the second factor and on re-authentication, over HTTP in this process: each pins a
// way to a recent check ("sudo mode") that skipped a check the confirmation page would have asked for.

const PASSWORD = 'the-right-password-1'
const HOUR_MS = 3_600_000
/** Past the 10 minutes a password (and code) check lets sensitive actions through. */
const PAST_RECENT_MS = 11 * 60_000
let serial = 0
const uniqueEmail = (name: string) => `${name}-${++serial}@acme.example`

async function signedIn(d: InProcessDashboard, email: string, address: string): Promise<Client> {
  const client = new Client(d.url, address)
  const answer = await client.signIn(email, PASSWORD)
  expect(answer.headers.get('location')).toBe('/')
  return client
}

const isConfirmPage = (text: string) => text.includes('<h1>Confirm access</h1>')

describe('re-authentication cannot be had without every check it asks for', { timeout: 120_000 }, () => {
  let d: InProcessDashboard
  beforeAll(async () => {
    d = await startInProcessDashboard()
  })
  afterAll(() => d?.close())
  afterEach(() => d.advance(2 * HOUR_MS))

  it('a password change by a member with two-factor is no recent check: turning two-factor off still asks for the code', async () => {
    const email = uniqueEmail('eve')
    const member = await d.addMember(email, PASSWORD)
    const client = await signedIn(d, email, '198.51.100.90')
    const setup = await client.get('/account/two-factor')
    const secret = secretOf(setup.text)
    const enrolled = await client.post('/account/two-factor', {
      _csrf: csrfOf(setup.text),
      code: totpCode(secret, d.now()),
    })
    expect(enrolled.status).toBe(201)

    // Whoever holds this session later knows the password but not the code.
    d.advance(PAST_RECENT_MS)
    const changed = await client.post('/account/password', {
      _csrf: await client.csrf(),
      current: PASSWORD,
      password: 'a-new-password-22',
      confirm: 'a-new-password-22',
    })
    expect(changed.status).toBe(303)
    const off = await client.post('/account/two-factor/disable', { _csrf: await client.csrf() })
    expect(off.status).toBe(200)
    expect(isConfirmPage(off.text)).toBe(true)
    expect((await d.dashboard.findMember(member.memberId))!.totpSecret).toMatch(/^v1\./)
    const codes = await client.post('/account/two-factor/recovery-codes', { _csrf: await client.csrf() })
    expect(isConfirmPage(codes.text)).toBe(true)
    expect(recoveryCodesOf(codes.text)).toHaveLength(0)
  })

  it('a password change without two-factor still counts as a recent check', async () => {
    const email = uniqueEmail('pam')
    await d.addMember(email, PASSWORD)
    const client = await signedIn(d, email, '198.51.100.91')
    d.advance(PAST_RECENT_MS)
    const changed = await client.post('/account/password', {
      _csrf: await client.csrf(),
      current: PASSWORD,
      password: 'a-new-password-22',
      confirm: 'a-new-password-22',
    })
    expect(changed.status).toBe(303)
    const setup = await client.get('/account/two-factor')
    expect(setup.status).toBe(200)
    expect(isConfirmPage(setup.text)).toBe(false)
  })

  /** Signs `admin` in, sets up their two-factor, and requires it of every member of the tenant. */
  async function requireTwoFactor(admin: string, address: string): Promise<void> {
    const adminClient = await signedIn(d, admin, address)
    const setup = await adminClient.get('/account/two-factor')
    const adminSecret = secretOf(setup.text)
    const code = totpCode(adminSecret, d.now())
    expect((await adminClient.post('/account/two-factor', { _csrf: csrfOf(setup.text), code })).status).toBe(201)
    const csrf = await adminClient.csrf()
    expect((await adminClient.post('/account/require-two-factor', { _csrf: csrf, require: 'yes' })).status).toBe(303)
  }

  it('the set-up a tenant’s rule holds a session at is no recent check: 10 minutes after the password, actions ask', async () => {
    const held = uniqueEmail('hal')
    await d.addMember(held, PASSWORD)
    const heldClient = await signedIn(d, held, '198.51.100.92')
    d.advance(6 * 60_000)
    await requireTwoFactor(await d.addMember(uniqueEmail('root'), PASSWORD).then((m) => m.email), '198.51.100.93')
    try {
      const page = await heldClient.get('/sign-in/two-factor')
      expect(page.status).toBe(200)
      const secret = secretOf(page.text)
      const done = await heldClient.post('/sign-in/two-factor', {
        _csrf: csrfOf(page.text),
        code: totpCode(secret, d.now()),
      })
      expect(done.status).toBe(201)
      // 11 minutes after the password, 5 after the set-up: a code of a secret it chose itself is no password.
      d.advance(5 * 60_000)
      const codes = await heldClient.post('/account/two-factor/recovery-codes', { _csrf: await heldClient.csrf() })
      expect(codes.status).toBe(200)
      expect(isConfirmPage(codes.text)).toBe(true)
      expect(recoveryCodesOf(codes.text)).toHaveLength(0)
    } finally {
      await d.dashboard.setRequireTwoFactor(d.tenant.tenantId, false)
    }
  })

  it('a session whose password is older than 10 minutes when the rule holds it goes back to the password step, set up nothing', async () => {
    const held = uniqueEmail('hob')
    const member = await d.addMember(held, PASSWORD)
    const heldClient = await signedIn(d, held, '198.51.100.94')
    const stale = new Client(d.url, '198.51.100.94')
    stale.cookies.set('saiku_session', heldClient.cookies.get('saiku_session')!)
    d.advance(PAST_RECENT_MS)
    await requireTwoFactor(await d.addMember(uniqueEmail('root'), PASSWORD).then((m) => m.email), '198.51.100.95')
    try {
      // Whoever holds the cookie now (without the password) cannot bind an authenticator of their own.
      const page = await heldClient.get('/sign-in/two-factor')
      expect(page.status).toBe(303)
      expect(page.headers.get('location')).toBe('/sign-in')
      expect(heldClient.cookies.has('saiku_session')).toBe(false)
      const posted = await stale.post('/sign-in/two-factor', { _csrf: 'x', code: '123456' })
      expect(posted.status).toBe(303)
      expect(posted.headers.get('location')).toBe('/sign-in')
      expect((await d.dashboard.findMember(member.memberId))!.totpSecret ?? null).toBeNull()
      // The password leads to the set-up again.
      const again = await new Client(d.url, '198.51.100.96').signIn(held, PASSWORD)
      expect(again.headers.get('location')).toBe('/sign-in/two-factor')
    } finally {
      await d.dashboard.setRequireTwoFactor(d.tenant.tenantId, false)
    }
  })
})
