import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto'
import { Secret, TOTP } from 'otpauth'
import QRCode from 'qrcode'

// Two-factor sign-in with TOTP (RFC 6238: SHA-1, 6 digits, 30-second steps, what every authenticator app
// reads). A code is accepted one step either side of now, and only once: the member's last used step is
// stored, and a code of that step or an earlier one is refused. Secrets are kept encrypted with the dashboard
// key (AES-256-GCM, bound to the member), so a copy of the database alone holds none; recovery codes are kept
// as SHA-256 digests (50 random bits each: too many to guess, and hashed once like a session ID).

/** Seconds a code lives. */
export const TOTP_PERIOD_SECONDS = 30
/** Steps accepted on either side of the current one: a phone's clock a little off, a code typed as it turns. */
export const TOTP_WINDOW_STEPS = 1
export const RECOVERY_CODE_COUNT = 10
/** The issuer authenticator apps show beside the account. */
const ISSUER = 'Saiku Cloud'

const RECOVERY_ALPHABET = 'abcdefghijkmnpqrstuvwxyz23456789' // 32 letters, no look-alikes: 5 bits each

export interface TwoFactorCrypto {
  /** `v1.<iv>.<ciphertext+tag>`, bound to the member. */
  seal(memberId: string, base32Secret: string): string
  /** The base32 secret, or null when the value was not sealed by this key for this member. */
  open(memberId: string, sealed: string): string | null
}

export function createTwoFactorCrypto(dashboardKey: Buffer): TwoFactorCrypto {
  const key = Buffer.from(hkdfSync('sha256', dashboardKey, Buffer.alloc(0), 'saiku dashboard totp secret', 32))
  return {
    seal(memberId, base32Secret) {
      const iv = randomBytes(12)
      const cipher = createCipheriv('aes-256-gcm', key, iv)
      cipher.setAAD(Buffer.from(memberId))
      const body = Buffer.concat([cipher.update(base32Secret, 'utf8'), cipher.final(), cipher.getAuthTag()])
      return `v1.${iv.toString('base64url')}.${body.toString('base64url')}`
    },
    open(memberId, sealed) {
      const match = /^v1\.([\w-]{16})\.([\w-]{24,200})$/.exec(sealed)
      if (match === null) return null
      try {
        const body = Buffer.from(match[2]!, 'base64url')
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(match[1]!, 'base64url'))
        decipher.setAAD(Buffer.from(memberId))
        decipher.setAuthTag(body.subarray(body.length - 16))
        return Buffer.concat([decipher.update(body.subarray(0, body.length - 16)), decipher.final()]).toString('utf8')
      } catch {
        return null // another key (a data folder's key replaced), or a value altered in the database
      }
    },
  }
}

/** A new secret: 160 random bits, base32, as RFC 4226 recommends. */
export const newTotpSecret = (): string => new Secret({ size: 20 }).base32

const totpFor = (base32Secret: string, account: string) =>
  new TOTP({
    issuer: ISSUER,
    label: account,
    secret: Secret.fromBase32(base32Secret),
    algorithm: 'SHA1',
    digits: 6,
    period: TOTP_PERIOD_SECONDS,
  })

/** The `otpauth://` URI an authenticator app scans. */
export const totpUri = (base32Secret: string, account: string): string => totpFor(base32Secret, account).toString()

/** The QR code of the URI, as an SVG data URL for an <img>: drawn on the server, no script. */
export async function totpQrDataUrl(uri: string): Promise<string> {
  const svg = await QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 })
  return `data:image/svg+xml;base64,${Buffer.from(svg).toString('base64')}`
}

/** The secret in groups of four, for typing into an app by hand. */
export const groupedSecret = (base32Secret: string): string => base32Secret.replace(/(.{4})(?=.)/g, '$1 ')

/** What the member typed in the code field: six digits (spaces allowed), or a recovery code, or neither. */
export type TypedCode =
  | { readonly kind: 'totp'; readonly token: string }
  | { readonly kind: 'recovery'; readonly code: string }
  | { readonly kind: 'malformed' }

export function readCode(input: unknown): TypedCode {
  if (typeof input !== 'string' || input.length > 40) return { kind: 'malformed' }
  const compact = input.replace(/[\s-]/g, '').toLowerCase()
  if (/^\d{6}$/.test(compact)) return { kind: 'totp', token: compact }
  if (compact.length === 10 && [...compact].every((c) => RECOVERY_ALPHABET.includes(c)))
    return { kind: 'recovery', code: compact }
  return { kind: 'malformed' }
}

/**
 * The time step a token is good for at `nowMs` (within one step either side), or null. Whether the step was
 * used already is the store's to say (`useTotpStep`).
 */
export function totpStep(base32Secret: string, token: string, nowMs: number): number | null {
  const totp = totpFor(base32Secret, '')
  const delta = totp.validate({ token, timestamp: nowMs, window: TOTP_WINDOW_STEPS })
  return delta === null ? null : totp.counter({ timestamp: nowMs }) + delta
}

/** The code an authenticator app shows at `nowMs`: for tests and tools, never sent by the server. */
export const totpCode = (base32Secret: string, nowMs: number): string =>
  totpFor(base32Secret, '').generate({ timestamp: nowMs })

/** Ten codes like `k7mq2-x9fde`, each 50 random bits. */
export function newRecoveryCodes(): string[] {
  const codes: string[] = []
  while (codes.length < RECOVERY_CODE_COUNT) {
    const letters = [...randomBytes(10)].map((byte) => RECOVERY_ALPHABET[byte & 31]!).join('')
    const code = `${letters.slice(0, 5)}-${letters.slice(5)}`
    if (!codes.includes(code)) codes.push(code)
  }
  return codes
}

/** What the store keeps of a recovery code, from its compact form (no dash, lower-case). */
export const recoveryDigest = (code: string): string =>
  createHash('sha256')
    .update(`saiku recovery code\n${code.replace(/-/g, '')}`)
    .digest('base64url')
