import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

// The two cookies of the sign-in page, both HMAC-signed with one server key:
// - the sign-in form's token: the browser holds a random ID (saiku_signin) and
//   each rendered form carries a token signed for that ID and the time it was
//   made, so every open sign-in tab works (for an hour), not only the last one;
// - the device cookie (saiku_device): set at a successful sign-in, signed for
//   the account, so a browser that signed in before is recognised by the
//   throttle. It names no account: it only verifies against the email typed.

/** How long a rendered sign-in form stays usable. */
export const SIGN_IN_FORM_TTL_SECONDS = 3_600
/** How long a browser is remembered as one that signed in to an account. */
export const DEVICE_COOKIE_MAX_AGE_SECONDS = 180 * 24 * 3_600
/** Accounts remembered per browser (people sharing a computer); the oldest is dropped first. */
export const MAX_DEVICE_ACCOUNTS = 5

const ID = /^[\w-]{22}$/
const MAC_BYTES = 18

/** The server's dashboard key: read from the data folder, or made there once (mode 0600). */
export function loadDashboardKey(dataDir: string): Buffer {
  const file = join(dataDir, 'dashboard-key')
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true })
    // wx: if another process made it first, keep theirs.
    try {
      writeFileSync(file, randomBytes(32).toString('base64url'), { mode: 0o600, flag: 'wx' })
    } catch (error) {
      if ((error as { code?: string }).code !== 'EEXIST') throw error
    }
    chmodSync(file, 0o600)
  }
  const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64url')
  if (key.length < 32) throw new Error(`${file}: expected 32 random bytes in base64url; delete it to make a new one`)
  return key
}

export interface SignInCookies {
  /** A new browser ID for the sign-in cookie. */
  newBrowserId(): string
  /** Whether `value` is shaped like a browser ID (else a new one is issued). */
  isBrowserId(value: string | undefined): value is string
  /** A token for one rendered form, bound to the browser ID. */
  formToken(browserId: string, nowMs?: number): string
  /** Whether the form's token was made for this browser within the form's lifetime. */
  checkFormToken(browserId: string, token: string, nowMs?: number): boolean
  /** The device ID among the cookie's entries that was signed for `account`, if any. */
  deviceFor(cookie: string | undefined, account: string): string | null
  /** The cookie after a sign-in to `account`: its entry first, others kept, at most MAX_DEVICE_ACCOUNTS. */
  rememberDevice(cookie: string | undefined, account: string): string
}

export function createSignInCookies(key: Buffer): SignInCookies {
  const mac = (purpose: string, ...parts: string[]): string =>
    createHmac('sha256', key)
      .update([purpose, ...parts].join('\n'))
      .digest()
      .subarray(0, MAC_BYTES)
      .toString('base64url')
  const same = (a: string, b: string): boolean =>
    a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b))
  const entries = (cookie: string | undefined): string[] =>
    cookie === undefined || cookie.length > 400 ? [] : cookie.split('~').slice(0, MAX_DEVICE_ACCOUNTS)
  const newId = (): string => randomBytes(16).toString('base64url')

  const deviceFor = (cookie: string | undefined, account: string): string | null => {
    for (const entry of entries(cookie)) {
      const [id, signature] = entry.split('.')
      if (id !== undefined && signature !== undefined && ID.test(id) && same(signature, mac('device', id, account)))
        return id
    }
    return null
  }

  return {
    newBrowserId: newId,
    isBrowserId: (value): value is string => value !== undefined && ID.test(value),
    formToken(browserId, nowMs = Date.now()) {
      const issued = Math.floor(nowMs / 1000).toString(36)
      return `${issued}.${mac('sign-in form', browserId, issued)}`
    },
    checkFormToken(browserId, token, nowMs = Date.now()) {
      const match = /^([0-9a-z]{1,9})\.([\w-]{24})$/.exec(token)
      if (match === null) return false
      const ageSeconds = Math.floor(nowMs / 1000) - parseInt(match[1]!, 36)
      if (ageSeconds < -60 || ageSeconds > SIGN_IN_FORM_TTL_SECONDS) return false
      return same(match[2]!, mac('sign-in form', browserId, match[1]!))
    },
    deviceFor,
    rememberDevice(cookie, account) {
      const id = deviceFor(cookie, account) ?? newId()
      const own = `${id}.${mac('device', id, account)}`
      const others = entries(cookie).filter((entry) => entry !== own && /^[\w-]{22}\.[\w-]{24}$/.test(entry))
      return [own, ...others].slice(0, MAX_DEVICE_ACCOUNTS).join('~')
    },
  }
}
