import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { totpCode } from '../src/dashboard/shared/two-factor.js'
import { CODES_PER_HOUR, CODES_PER_SIGN_IN } from '../src/dashboard/shared/code-throttle.js'
import {
  alertOf,
  Client,
  csrfOf,
  noticeOf,
  recoveryCodesOf,
  secretOf,
  startInProcessDashboard,
  type InProcessDashboard,
} from './dashboard-http.js'
import { cliJson } from './helpers.js'
import { postgresUrl } from './services.js'

// Members' account security over HTTP, in this process, with the dashboard's clock in the test's hands:
// two-factor enrolment and sign-in, its per-account code budget under concurrency, recovery codes, a tenant
// that requires two-factor, re-authentication before live keys, the password change and the sessions list.

const PASSWORD = 'the-right-password-1'
const STEP_MS = 30_000
const HOUR_MS = 3_600_000
let serial = 0
const uniqueEmail = (name: string) => `${name}-${++serial}@acme.example`

/** Signs in with the password alone (the member has no second factor): the session is a full one. */
async function signedIn(d: InProcessDashboard, email: string, address = '198.51.100.7'): Promise<Client> {
  const client = new Client(d.url, address)
  const answer = await client.signIn(email, PASSWORD)
  expect(answer.status).toBe(303)
  expect(answer.headers.get('location')).toBe('/')
  return client
}

/** Sets up two-factor from the Account page; returns the secret and the recovery codes shown. */
async function enrol(d: InProcessDashboard, client: Client): Promise<{ secret: string; codes: string[] }> {
  const setup = await client.get('/account/two-factor')
  expect(setup.status).toBe(200)
  expect(setup.text).toContain('data:image/svg+xml;base64,')
  const secret = secretOf(setup.text)
  const done = await client.post('/account/two-factor', { _csrf: csrfOf(setup.text), code: totpCode(secret, d.now()) })
  expect(done.status).toBe(201)
  const codes = recoveryCodesOf(done.text)
  expect(codes).toHaveLength(10)
  expect(new Set(codes).size).toBe(10)
  // The code just used is spent: the next sign-in is in the next step.
  d.advance(STEP_MS)
  return { secret, codes }
}

/** The password step of a member with two-factor: the session waits at the code step. */
async function atCodeStep(d: InProcessDashboard, email: string, address: string): Promise<Client> {
  const client = new Client(d.url, address)
  const answer = await client.signIn(email, PASSWORD)
  expect(answer.status).toBe(303)
  expect(answer.headers.get('location')).toBe('/sign-in/code')
  return client
}

async function sendCode(client: Client, code: string) {
  const page = await client.get('/sign-in/code')
  expect(page.status).toBe(200)
  return client.post('/sign-in/code', { _csrf: csrfOf(page.text), code })
}

const countActivity = async (d: InProcessDashboard, action: string) =>
  (await d.dashboard.listActivity(d.tenant.tenantId, 10_000)).filter((e) => e.action === action).length

/** A 6-digit code that is not the secret's at any step near now. */
function wrongCode(secret: string, nowMs: number, seed: number): string {
  const near = new Set([-1, 0, 1].map((k) => totpCode(secret, nowMs + k * STEP_MS)))
  for (let n = seed; ; n++) {
    const code = String(n % 1_000_000).padStart(6, '0')
    if (!near.has(code)) return code
  }
}

describe('two-factor sign-in (SQLite)', { timeout: 120_000 }, () => {
  let d: InProcessDashboard
  beforeAll(async () => {
    d = await startInProcessDashboard()
  })
  afterAll(() => d?.close())
  afterEach(() => d.advance(2 * HOUR_MS)) // fresh hour windows

  it('enrols from the Account page, keeps the secret sealed, and asks for the code after the password', async () => {
    const email = uniqueEmail('ada')
    const member = await d.addMember(email, PASSWORD)
    const client = await signedIn(d, email)
    const { secret } = await enrol(d, client)
    // The store holds the secret sealed, never as the app was given it.
    const stored = (await d.dashboard.findMember(member.memberId))!.totpSecret!
    expect(stored).toMatch(/^v1\./)
    expect(stored).not.toContain(secret)
    // Shown once: the Account page now says it is on, with no secret and no QR code.
    const account = await client.get('/account')
    expect(account.text).toContain('10 recovery codes')
    expect(account.text).not.toContain(secret.slice(0, 8))
    expect(account.text).not.toContain('data:image/svg+xml')
    expect((await client.get('/account/two-factor')).headers.get('location')).toBe('/account')

    // A new browser: the password is not enough to open a page.
    const other = await atCodeStep(d, email, '198.51.100.8')
    for (const path of ['/', '/api-keys', '/account']) {
      const page = await other.get(path)
      expect(page.status).toBe(303)
      expect(page.headers.get('location')).toBe('/sign-in/code')
    }
    const signed = await sendCode(other, totpCode(secret, d.now()))
    expect(signed.status).toBe(303)
    expect(signed.headers.get('location')).toBe('/')
    expect((await other.get('/')).status).toBe(200)
  })

  it('accepts a code one step either side of now, never two, and never a code twice', async () => {
    const email = uniqueEmail('grace')
    await d.addMember(email, PASSWORD)
    const { secret } = await enrol(d, await signedIn(d, email))
    d.advance(10 * STEP_MS)
    const now = d.now()
    // Two steps behind, and two ahead: refused.
    const far = await atCodeStep(d, email, '198.51.100.20')
    expect((await sendCode(far, totpCode(secret, now - 2 * STEP_MS))).status).toBe(401)
    expect((await sendCode(far, totpCode(secret, now + 2 * STEP_MS))).status).toBe(401)
    // One behind: accepted; then the same code in another sign-in, and the one before it, are refused.
    const behind = totpCode(secret, now - STEP_MS)
    expect((await sendCode(far, behind)).status).toBe(303)
    const replay = await atCodeStep(d, email, '198.51.100.21')
    const replayed = await sendCode(replay, behind)
    expect(replayed.status).toBe(401)
    expect(alertOf(replayed.text)).toMatch(/^Incorrect code\. \d tries left\.$/)
    // One ahead: accepted (a later step than any used).
    expect((await sendCode(replay, totpCode(secret, now + STEP_MS))).status).toBe(303)
  })

  it('takes each recovery code once, and says how many are left', async () => {
    const email = uniqueEmail('lin')
    await d.addMember(email, PASSWORD)
    const { codes } = await enrol(d, await signedIn(d, email))
    const first = await atCodeStep(d, email, '198.51.100.30')
    const used = await sendCode(first, codes[3]!.toUpperCase().replace('-', ' '))
    expect(used.status).toBe(303)
    expect(used.headers.get('location')).toBe('/account')
    const account = await first.get('/account')
    expect(noticeOf(account.text)).toContain('9 recovery codes are left')
    expect(account.text).toContain('9 recovery codes')
    const again = await atCodeStep(d, email, '198.51.100.31')
    expect((await sendCode(again, codes[3]!)).status).toBe(401)
    expect(await countActivity(d, 'sign_in.code_refused')).toBeGreaterThanOrEqual(1)
  })

  it('sends the member back to the password step after 5 wrong codes, even when 20 are sent at once', async () => {
    const email = uniqueEmail('kay')
    await d.addMember(email, PASSWORD)
    const { secret } = await enrol(d, await signedIn(d, email))
    const before = await countActivity(d, 'sign_in.code_refused')
    const client = await atCodeStep(d, email, '198.51.100.40')
    const page = await client.get('/sign-in/code')
    const token = csrfOf(page.text)
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        client.post('/sign-in/code', { _csrf: token, code: wrongCode(secret, d.now(), 100_000 + i) }),
      ),
    )
    // Exactly the sign-in's budget was checked; every other answer sends the browser back to the password.
    expect((await countActivity(d, 'sign_in.code_refused')) - before).toBe(CODES_PER_SIGN_IN)
    expect(answers.filter((a) => a.status === 401)).toHaveLength(CODES_PER_SIGN_IN - 1)
    const back = answers.filter((a) => a.status === 303)
    expect(back).toHaveLength(20 - (CODES_PER_SIGN_IN - 1))
    // The one that ended the sign-in says why; those that came after it find no sign-in to continue.
    expect(back.filter((a) => a.headers.get('location') === '/sign-in?codes=1').length).toBeGreaterThanOrEqual(1)
    for (const answer of back) expect(answer.headers.get('location')).toMatch(/^\/sign-in(\?codes=1)?$/)
    // The half-done sign-in is over: even the right code now gets the password step.
    const after = await client.post('/sign-in/code', { _csrf: token, code: totpCode(secret, d.now()) })
    expect(after.status).toBe(303)
    expect(after.headers.get('location')).toBe('/sign-in')
    const signIn = await client.get('/sign-in?codes=1')
    expect(noticeOf(signIn.text)).toBe('Too many wrong codes. Sign in again with your password.')
  })

  it('locks the code step for the rest of the hour after 10 wrong codes, whatever the browser, device cookie or address', async () => {
    const email = uniqueEmail('max')
    await d.addMember(email, PASSWORD)
    const { secret } = await enrol(d, await signedIn(d, email))
    // A browser that completed a sign-in before: it holds the device cookie.
    const trusted = await atCodeStep(d, email, '192.0.2.50')
    expect((await sendCode(trusted, totpCode(secret, d.now()))).status).toBe(303)
    expect(trusted.cookies.get('saiku_device')).toBeDefined()
    d.advance(STEP_MS)
    const before = await countActivity(d, 'sign_in.code_refused')
    const throttledBefore = await countActivity(d, 'sign_in.code_throttled')
    // Three half-done sign-ins from three addresses, 10 concurrent wrong codes each.
    const pending = await Promise.all(['203.0.113.1', '203.0.113.2', '203.0.113.3'].map((a) => atCodeStep(d, email, a)))
    const tokens = await Promise.all(pending.map(async (c) => csrfOf((await c.get('/sign-in/code')).text)))
    await Promise.all(
      pending.flatMap((client, k) =>
        Array.from({ length: 10 }, (_, i) =>
          client.post('/sign-in/code', { _csrf: tokens[k]!, code: wrongCode(secret, d.now(), 200_000 + k * 100 + i) }),
        ),
      ),
    )
    expect((await countActivity(d, 'sign_in.code_refused')) - before).toBe(CODES_PER_HOUR)

    // Now the right code waits, in the browser with the device cookie at a new address too.
    trusted.address = '192.0.2.99'
    const locked = await atCodeStep(d, email, trusted.address)
    locked.cookies.set('saiku_device', trusted.cookies.get('saiku_device')!)
    for (let i = 0; i < 3; i++) {
      const refused = await sendCode(locked, totpCode(secret, d.now()))
      expect(refused.status).toBe(429)
      expect(alertOf(refused.text)).toMatch(
        /^Too many wrong codes or passwords for this account\. Try again in (5\d|60) minutes\.$/,
      )
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(3_000)
    }
    // Throttled attempts (the burst's last 20 and these 3) reach Activity once a minute.
    expect((await countActivity(d, 'sign_in.code_throttled')) - throttledBefore).toBe(1)
    d.advance(61_000)
    const late = await atCodeStep(d, email, trusted.address)
    expect((await sendCode(late, totpCode(secret, d.now()))).status).toBe(429)
    expect((await countActivity(d, 'sign_in.code_throttled')) - throttledBefore).toBe(2)

    // After the hour, the right code signs in.
    d.advance(HOUR_MS)
    const fresh = await atCodeStep(d, email, trusted.address)
    expect((await sendCode(fresh, totpCode(secret, d.now()))).status).toBe(303)
  })

  it('refuses a second step form from another site or without its token, and a form with no code, charging nothing', async () => {
    const email = uniqueEmail('ora')
    await d.addMember(email, PASSWORD)
    const { secret } = await enrol(d, await signedIn(d, email))
    const client = await atCodeStep(d, email, '198.51.100.60')
    const token = csrfOf((await client.get('/sign-in/code')).text)
    const code = totpCode(secret, d.now())
    expect(
      (await client.post('/sign-in/code', { _csrf: token, code }, { origin: 'https://evil.example' })).status,
    ).toBe(403)
    expect((await client.post('/sign-in/code', { _csrf: 'forged', code })).status).toBe(403)
    expect((await client.post('/sign-in/code', { code })).status).toBe(403)
    // A body that is not the form (JSON): refused like a form without its token, never a crash.
    const json = await fetch(`${d.url}/sign-in/code`, {
      method: 'POST',
      headers: {
        origin: d.url,
        'content-type': 'application/json',
        cookie: [...client.cookies].map(([name, value]) => `${name}=${value}`).join('; '),
      },
      body: JSON.stringify({ _csrf: token, code }),
      redirect: 'manual',
    })
    expect(json.status).toBe(403)
    expect(json.headers.get('content-type')).toMatch(/^text\/html/)
    const empty = await client.post('/sign-in/code', { _csrf: token, code: '  ' })
    expect(empty.status).toBe(400)
    expect(alertOf(empty.text)).toBe('Enter the code your authenticator app shows, or a recovery code.')
    // None of them spent a code: the right one still signs in.
    expect((await client.post('/sign-in/code', { _csrf: token, code })).status).toBe(303)
  })

  it('lets an admin require two-factor: a member without it sets it up after the password, and cannot turn it off', async () => {
    const admin = uniqueEmail('root')
    const viewer = uniqueEmail('vic')
    await d.addMember(admin, PASSWORD)
    await d.addMember(viewer, PASSWORD, 'viewer')
    const adminClient = await signedIn(d, admin)
    // Refused until the admin has it on.
    expect(
      (await adminClient.post('/account/require-two-factor', { _csrf: await adminClient.csrf(), require: 'yes' }))
        .status,
    ).toBe(409)
    const viewerClient = await signedIn(d, viewer, '198.51.100.71')
    // A viewer cannot set the rule.
    expect(
      (await viewerClient.post('/account/require-two-factor', { _csrf: await viewerClient.csrf(), require: 'yes' }))
        .status,
    ).toBe(403)
    await enrol(d, adminClient)
    const set = await adminClient.post('/account/require-two-factor', {
      _csrf: await adminClient.csrf(),
      require: 'yes',
    })
    expect(set.status).toBe(303)
    try {
      // The viewer's open session is held at the set-up, and so is a new sign-in.
      expect((await viewerClient.get('/api-keys')).headers.get('location')).toBe('/sign-in/two-factor')
      const fresh = new Client(d.url, '198.51.100.72')
      const answer = await fresh.signIn(viewer, PASSWORD)
      expect(answer.headers.get('location')).toBe('/sign-in/two-factor')
      expect((await fresh.get('/')).headers.get('location')).toBe('/sign-in/two-factor')
      const setup = await fresh.get('/sign-in/two-factor')
      expect(setup.status).toBe(200)
      expect(noticeOf(setup.text)).toBe('Your tenant requires two-factor sign-in. Set it up to continue.')
      const secret = secretOf(setup.text)
      const wrong = await fresh.post('/sign-in/two-factor', {
        _csrf: csrfOf(setup.text),
        code: wrongCode(secret, d.now(), 1),
      })
      expect(wrong.status).toBe(401)
      const done = await fresh.post('/sign-in/two-factor', {
        _csrf: csrfOf(setup.text),
        code: totpCode(secret, d.now()),
      })
      expect(done.status).toBe(201)
      expect(recoveryCodesOf(done.text)).toHaveLength(10)
      expect((await fresh.get('/')).status).toBe(200)
      // Required: it cannot be turned off (re-authentication is fresh after the set-up's sign-in).
      const off = await fresh.post('/account/two-factor/disable', { _csrf: await fresh.csrf() })
      expect(off.status).toBe(409)
    } finally {
      await d.dashboard.setRequireTwoFactor(d.tenant.tenantId, false)
    }
  })
})

describe('the operator’s reset of a member’s two-factor', { timeout: 120_000 }, () => {
  let d: InProcessDashboard
  beforeAll(async () => {
    d = await startInProcessDashboard()
  })
  afterAll(() => d?.close())

  it('turns it off and ends the member’s sessions: the password alone signs in again', async () => {
    const email = uniqueEmail('lost')
    await d.addMember(email, PASSWORD)
    const client = await signedIn(d, email)
    await enrol(d, client)
    await atCodeStep(d, email, '198.51.100.110')
    const reset = await cliJson<{ email: string; twoFactor: boolean; hadTwoFactor: boolean }>(
      ['members', 'reset-two-factor', '--email', email, '--json'],
      { DATABASE_URL: d.databaseUrl, REDIS_URL: '' },
    )
    expect(reset).toEqual({ email, twoFactor: false, hadTwoFactor: true })
    expect((await client.get('/')).headers.get('location')).toBe('/sign-in')
    expect((await d.dashboard.findMemberByEmail(email))?.totpSecret).toBeNull()
    await signedIn(d, email, '198.51.100.111')
    expect(await countActivity(d, 'two_factor.reset')).toBe(1)
  })
})

describe('re-authentication before live keys (sudo mode)', { timeout: 120_000 }, () => {
  let d: InProcessDashboard
  beforeAll(async () => {
    d = await startInProcessDashboard()
  })
  afterAll(() => d?.close())
  afterEach(() => d.advance(2 * HOUR_MS))

  const keyCount = async () => (await d.store.listKeys(d.tenant.tenantId)).length

  async function newKeyForm(client: Client): Promise<{ csrf: string; nonce: string }> {
    const page = await client.get('/api-keys/new')
    expect(page.status).toBe(200)
    return { csrf: csrfOf(page.text), nonce: page.text.match(/name="_form" value="([^"]+)"/)![1]! }
  }

  it('asks for the password and code again after 10 minutes, keeps the form, and reuses the check for 10 minutes', async () => {
    const email = uniqueEmail('sue')
    await d.addMember(email, PASSWORD)
    const client = await signedIn(d, email)
    const { secret } = await enrol(d, client)
    // Just signed in: a live key needs nothing more.
    let form = await newKeyForm(client)
    expect(
      (await client.post('/api-keys', { _csrf: form.csrf, _form: form.nonce, label: 'fresh', environment: 'live' }))
        .status,
    ).toBe(201)

    d.advance(10 * 60_000 + 1_000)
    const before = await keyCount()
    form = await newKeyForm(client)
    const fields = {
      _csrf: form.csrf,
      _form: form.nonce,
      label: '<b>ci</b>',
      environment: 'live',
      permissions: ['keys:read'],
    }
    const asked = await client.post('/api-keys', fields)
    expect(asked.status).toBe(200)
    expect(asked.text).toContain('<h1>Confirm access</h1>')
    expect(asked.text).toContain('<label for="reauth-code">Code</label>')
    // The form's fields ride along, escaped.
    expect(asked.text).toContain('name="label" value="&lt;b&gt;ci&lt;/b&gt;"')
    expect(asked.text).toContain('name="permissions" value="keys:read"')
    expect(asked.text).not.toContain('<b>ci</b>')
    expect(await keyCount()).toBe(before)

    // A wrong password, or the right one without the code: refused, nothing created.
    const wrong = await client.post('/api-keys', {
      ...fields,
      _reauth_password: 'not-it',
      _reauth_code: totpCode(secret, d.now()),
    })
    expect(wrong.status).toBe(401)
    expect(alertOf(wrong.text)).toBe('Incorrect password or code.')
    const noCode = await client.post('/api-keys', { ...fields, _reauth_password: PASSWORD, _reauth_code: '' })
    expect(noCode.status).toBe(401)
    expect(await keyCount()).toBe(before)
    // Both: the key is created from the same form.
    const created = await client.post('/api-keys', {
      ...fields,
      _reauth_password: PASSWORD,
      _reauth_code: totpCode(secret, d.now()),
    })
    expect(created.status).toBe(201)
    expect(created.text).toContain('Copy your secret key now')
    expect(await keyCount()).toBe(before + 1)

    // Within the next 10 minutes, a rotation of a live key goes straight through.
    d.advance(9 * 60_000)
    const live = (await d.store.listKeys(d.tenant.tenantId)).find((k) => k.label === 'fresh')!
    const rotatePage = await client.post(`/api-keys/${live.keyId}/rotate`, { _csrf: form.csrf })
    const nonce = rotatePage.text.match(/name="_form" value="([^"]+)"/)![1]!
    expect(
      (
        await client.post(`/api-keys/${live.keyId}/rotate`, {
          _csrf: form.csrf,
          _form: nonce,
          confirm: 'yes',
          grace: '0',
        })
      ).status,
    ).toBe(201)
  })

  it('does not ask for a test key, and asks before a rotation or a set-up page once the check is old', async () => {
    const email = uniqueEmail('tom')
    await d.addMember(email, PASSWORD)
    const client = await signedIn(d, email)
    let form = await newKeyForm(client)
    expect(
      (await client.post('/api-keys', { _csrf: form.csrf, _form: form.nonce, label: 'live', environment: 'live' }))
        .status,
    ).toBe(201)
    d.advance(11 * 60_000)
    form = await newKeyForm(client)
    expect(
      (await client.post('/api-keys', { _csrf: form.csrf, _form: form.nonce, label: 'test', environment: 'test' }))
        .status,
    ).toBe(201)
    const live = (await d.store.listKeys(d.tenant.tenantId)).find((k) => k.label === 'live')!
    const rotatePage = await client.post(`/api-keys/${live.keyId}/rotate`, { _csrf: form.csrf })
    const nonce = rotatePage.text.match(/name="_form" value="([^"]+)"/)![1]!
    const rotate = { _csrf: form.csrf, _form: nonce, confirm: 'yes', grace: '0' }
    const asked = await client.post(`/api-keys/${live.keyId}/rotate`, rotate)
    expect(asked.text).toContain('<h1>Confirm access</h1>')
    // No second factor on this account: the password alone.
    expect(asked.text).not.toContain('reauth-code')
    expect(
      (await client.post(`/api-keys/${live.keyId}/rotate`, { ...rotate, _reauth_password: PASSWORD })).status,
    ).toBe(201)
    // A page asked for by GET goes through /confirm-access and back.
    d.advance(11 * 60_000)
    const setup = await client.get('/account/two-factor')
    expect(setup.text).toContain('action="/confirm-access?next=%2Faccount%2Ftwo-factor"')
    const back = await client.post('/confirm-access?next=%2Faccount%2Ftwo-factor', {
      _csrf: csrfOf(setup.text),
      _reauth_password: PASSWORD,
    })
    expect(back.status).toBe(303)
    expect(back.headers.get('location')).toBe('/account/two-factor')
    expect((await client.get('/account/two-factor')).text).toContain('Two-factor secret')
  })

  it('asks again before inviting a member, changing a role or removing one once the check is 10 minutes old', async () => {
    const email = uniqueEmail('val')
    await d.addMember(email, PASSWORD)
    const other = await d.addMember(uniqueEmail('wes'), PASSWORD, 'viewer')
    const client = await signedIn(d, email)
    const csrf = await client.csrf()
    const invitee = uniqueEmail('new')
    const invite = { _csrf: csrf, email: invitee, role: 'viewer' }
    // Just signed in: an invitation goes straight through.
    expect((await client.post('/members/invite', invite)).status).toBe(201)

    d.advance(10 * 60_000 + 1_000)
    const later = { _csrf: csrf, email: uniqueEmail('late'), role: 'admin' }
    const askedInvite = await client.post('/members/invite', later)
    expect(askedInvite.status).toBe(200)
    expect(askedInvite.text).toContain('<h1>Confirm access</h1>')
    expect(askedInvite.text).toContain('action="/members/invite"')
    const role = await client.post(`/members/${other.memberId}/role`, { _csrf: csrf, role: 'admin' })
    expect(role.text).toContain('<h1>Confirm access</h1>')
    expect((await d.dashboard.findMember(other.memberId))?.role).toBe('viewer')
    const remove = await client.post(`/members/${other.memberId}/remove`, { _csrf: csrf, confirm: 'yes' })
    expect(remove.text).toContain('<h1>Confirm access</h1>')
    expect(await d.dashboard.findMember(other.memberId)).not.toBeNull()
    // A wrong password changes nothing; the right one carries the role change through.
    const wrong = await client.post(`/members/${other.memberId}/role`, {
      _csrf: csrf,
      role: 'admin',
      _reauth_password: 'not-it',
    })
    expect(wrong.status).toBe(401)
    expect((await d.dashboard.findMember(other.memberId))?.role).toBe('viewer')
    const changed = await client.post(`/members/${other.memberId}/role`, {
      _csrf: csrf,
      role: 'admin',
      _reauth_password: PASSWORD,
    })
    expect(changed.status).toBe(303)
    expect((await d.dashboard.findMember(other.memberId))?.role).toBe('admin')
    // The check is reused: the invitation asked for above now goes straight through.
    expect((await client.post('/members/invite', later)).status).toBe(201)
  })

  it('asks again before adding a webhook endpoint or rotating its secret once the check is 10 minutes old', async () => {
    const email = uniqueEmail('xia')
    await d.addMember(email, PASSWORD)
    const client = await signedIn(d, email)
    const csrf = await client.csrf()
    const add = { _csrf: csrf, url: 'http://127.0.0.1:9/hook', events: 'key.revoked' }
    expect((await client.post('/webhooks', add)).status).toBe(201)
    const endpointId = (await client.get('/webhooks')).text.match(/href="\/webhooks\/(ep_[\w-]{16})"/)![1]!

    d.advance(10 * 60_000 + 1_000)
    const asked = await client.post('/webhooks', { ...add, url: 'http://127.0.0.1:9/other' })
    expect(asked.status).toBe(200)
    expect(asked.text).toContain('<h1>Confirm access</h1>')
    expect(asked.text).toContain('name="url" value="http://127.0.0.1:9/other"')
    const rotate = await client.post(`/webhooks/${endpointId}/rotate-secret`, { _csrf: csrf })
    expect(rotate.text).toContain('<h1>Confirm access</h1>')
    expect(rotate.text).not.toContain('whsec_')
    const added = await client.post('/webhooks', {
      ...add,
      url: 'http://127.0.0.1:9/other',
      _reauth_password: PASSWORD,
    })
    expect(added.status).toBe(201)
    expect(added.text).toContain('whsec_')
  })

  it('charges wrong re-authentication passwords to the account: the 11th in an hour is refused unchecked', async () => {
    const email = uniqueEmail('uma')
    await d.addMember(email, PASSWORD)
    const client = await signedIn(d, email)
    d.advance(11 * 60_000)
    const csrf = await client.csrf()
    const answers = await Promise.all(
      Array.from({ length: 15 }, (_, i) =>
        client.post('/confirm-access?next=/', { _csrf: csrf, _reauth_password: `wrong-${i}` }),
      ),
    )
    // 401 only after a check; 503 when the bound on password checks is full, which spends nothing.
    const statuses = answers.map((a) => a.status)
    const checked = statuses.filter((s) => s === 401).length
    expect(checked).toBeLessThanOrEqual(CODES_PER_HOUR)
    expect(statuses.filter((s) => s === 401 || s === 429 || s === 503)).toHaveLength(15)
    // One at a time until refused: exactly the hour's budget was checked in all.
    let more = 0
    for (;;) {
      const answer = await client.post('/confirm-access?next=/', { _csrf: csrf, _reauth_password: `again-${more}` })
      if (answer.status === 429) break
      expect(answer.status).toBe(401)
      more++
    }
    expect(checked + more).toBe(CODES_PER_HOUR)
    expect((await client.post('/confirm-access?next=/', { _csrf: csrf, _reauth_password: PASSWORD })).status).toBe(429)
  })
})

describe('self-service: password and sessions', { timeout: 120_000 }, () => {
  let d: InProcessDashboard
  beforeAll(async () => {
    d = await startInProcessDashboard()
  })
  afterAll(() => d?.close())
  afterEach(() => d.advance(2 * HOUR_MS))

  it('changes the password: every other session ends, this one stays, and the old password no longer works', async () => {
    const email = uniqueEmail('pat')
    await d.addMember(email, PASSWORD)
    const here = await signedIn(d, email, '198.51.100.80')
    const there = await signedIn(d, email, '198.51.100.81')
    const csrf = await here.csrf()
    const wrong = await here.post('/account/password', {
      _csrf: csrf,
      current: 'not-the-password',
      password: 'a-new-password-22',
      confirm: 'a-new-password-22',
    })
    expect(wrong.status).toBe(401)
    expect(alertOf(wrong.text)).toBe('The current password is not right.')
    const differ = await here.post('/account/password', {
      _csrf: csrf,
      current: PASSWORD,
      password: 'a-new-password-22',
      confirm: 'a-new-password-23',
    })
    expect(differ.status).toBe(400)
    const short = await here.post('/account/password', {
      _csrf: csrf,
      current: PASSWORD,
      password: 'short',
      confirm: 'short',
    })
    expect(short.status).toBe(400)
    expect((await there.get('/')).status).toBe(200)
    const changed = await here.post('/account/password', {
      _csrf: csrf,
      current: PASSWORD,
      password: 'a-new-password-22',
      confirm: 'a-new-password-22',
    })
    expect(changed.status).toBe(303)
    expect(noticeOf((await here.get('/account')).text)).toBe(
      'Password changed. Every other session of yours was ended.',
    )
    expect((await there.get('/')).headers.get('location')).toBe('/sign-in')
    expect((await here.get('/')).status).toBe(200)
    expect((await new Client(d.url, '198.51.100.82').signIn(email, PASSWORD)).status).toBe(401)
    expect((await new Client(d.url, '198.51.100.83').signIn(email, 'a-new-password-22')).status).toBe(303)
    expect(await countActivity(d, 'member.password_changed')).toBe(1)
  })

  it('lists the member’s sessions with device, address and last seen, escaped, and ends one; another member’s is a 404', async () => {
    const email = uniqueEmail('sam')
    await d.addMember(email, PASSWORD)
    const here = await signedIn(d, email, '198.51.100.90')
    const phone = new Client(
      d.url,
      '203.0.113.77',
      'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1 <script>alert(1)</script>',
    )
    expect((await phone.signIn(email, PASSWORD)).status).toBe(303)
    const page = await here.get('/account')
    expect(page.text).toContain('Chrome on Linux')
    expect(page.text).toContain('Safari on iOS')
    expect(page.text).toContain('<code>203.0.113.77</code>')
    expect(page.text).toContain('This session')
    expect(page.text).not.toContain('<script>alert(1)</script>')
    const ends = [...page.text.matchAll(/action="\/account\/sessions\/([\w-]{22})\/end"/g)].map((m) => m[1]!)
    expect(ends).toHaveLength(2)
    // Another member cannot end it, nor learn whether it exists.
    const stranger = uniqueEmail('eve')
    await d.addMember(stranger, PASSWORD)
    const eve = await signedIn(d, stranger, '198.51.100.91')
    const eveCsrf = await eve.csrf()
    for (const handle of ends)
      expect((await eve.post(`/account/sessions/${handle}/end`, { _csrf: eveCsrf })).status).toBe(404)
    expect((await phone.get('/')).status).toBe(200)
    // Without the CSRF token, or from another site: refused.
    const csrf = csrfOf(page.text)
    const phoneRow = page.text.split('<tr>').find((row) => row.includes('Safari on iOS'))!
    const phoneHandle = phoneRow.match(/sessions\/([\w-]{22})\/end/)![1]!
    expect((await here.post(`/account/sessions/${phoneHandle}/end`, {})).status).toBe(403)
    expect(
      (await here.post(`/account/sessions/${phoneHandle}/end`, { _csrf: csrf }, { origin: 'https://evil.example' }))
        .status,
    ).toBe(403)
    expect((await phone.get('/')).status).toBe(200)
    const ended = await here.post(`/account/sessions/${phoneHandle}/end`, { _csrf: csrf })
    expect(ended.status).toBe(303)
    expect(noticeOf((await here.get('/account')).text)).toBe('Session ended: Safari on iOS, 203.0.113.77.')
    expect((await phone.get('/')).headers.get('location')).toBe('/sign-in')
    expect((await here.get('/')).status).toBe(200)
  })
})

describe.skipIf(postgresUrl === undefined)('two-factor on PostgreSQL', { timeout: 120_000 }, () => {
  let d: InProcessDashboard
  beforeAll(async () => {
    d = await startInProcessDashboard('postgres')
  })
  afterAll(() => d?.close())

  it('enrols, signs in with a code once, takes a recovery code once, and keeps other sessions out after a password change', async () => {
    const email = uniqueEmail('pg')
    await d.addMember(email, PASSWORD)
    const client = await signedIn(d, email)
    const { secret, codes } = await enrol(d, client)
    const code = totpCode(secret, d.now())
    const [a, b] = await Promise.all([atCodeStep(d, email, '198.51.100.100'), atCodeStep(d, email, '198.51.100.101')])
    // The same code in two sign-ins at once: one signs in.
    const both = await Promise.all([sendCode(a, code), sendCode(b, code)])
    expect(both.map((x) => x.status).sort()).toEqual([303, 401])
    const c = await atCodeStep(d, email, '198.51.100.102')
    const twice = await Promise.all([
      sendCode(c, codes[0]!),
      sendCode(await atCodeStep(d, email, '198.51.100.103'), codes[0]!),
    ])
    expect(twice.map((x) => x.status).sort()).toEqual([303, 401])
    expect(await d.dashboard.countRecoveryCodes((await d.dashboard.findMemberByEmail(email))!.memberId)).toBe(9)
    const csrf = await client.csrf()
    expect(
      (
        await client.post('/account/password', {
          _csrf: csrf,
          current: PASSWORD,
          password: 'another-password-9',
          confirm: 'another-password-9',
        })
      ).status,
    ).toBe(303)
    expect((await client.get('/')).status).toBe(200)
    expect((await a.get('/')).status).toBe(303)
  })
})
