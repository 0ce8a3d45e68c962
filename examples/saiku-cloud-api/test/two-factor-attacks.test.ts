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
const STEP_MS = 30_000
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

  it('the set-up a tenant’s rule holds an old session at is no recent check: the next sensitive action asks', async () => {
    const admin = uniqueEmail('root')
    const held = uniqueEmail('hal')
    await d.addMember(admin, PASSWORD)
    await d.addMember(held, PASSWORD)
    const heldClient = await signedIn(d, held, '198.51.100.92')
    d.advance(PAST_RECENT_MS)

    const adminClient = await signedIn(d, admin, '198.51.100.93')
    const setup = await adminClient.get('/account/two-factor')
    const adminSecret = secretOf(setup.text)
    expect(
      (
        await adminClient.post('/account/two-factor', {
          _csrf: csrfOf(setup.text),
          code: totpCode(adminSecret, d.now()),
        })
      ).status,
    ).toBe(201)
    expect(
      (await adminClient.post('/account/require-two-factor', { _csrf: await adminClient.csrf(), require: 'yes' }))
        .status,
    ).toBe(303)
    try {
      // The held session's password was checked 11 minutes ago; a code of a secret it chose itself is no password.
      const page = await heldClient.get('/sign-in/two-factor')
      expect(page.status).toBe(200)
      const secret = secretOf(page.text)
      const done = await heldClient.post('/sign-in/two-factor', {
        _csrf: csrfOf(page.text),
        code: totpCode(secret, d.now()),
      })
      expect(done.status).toBe(201)
      d.advance(STEP_MS)
      const codes = await heldClient.post('/account/two-factor/recovery-codes', { _csrf: await heldClient.csrf() })
      expect(codes.status).toBe(200)
      expect(isConfirmPage(codes.text)).toBe(true)
      expect(recoveryCodesOf(codes.text)).toHaveLength(0)
    } finally {
      await d.dashboard.setRequireTwoFactor(d.tenant.tenantId, false)
    }
  })
})
