import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto'

// scrypt from node:crypto with one of the parameter sets of OWASP's Password
// Storage Cheat Sheet (N=2^16, r=8, p=2: 64 MiB, the same cost as N=2^17, p=1
// with half the memory per hash). Hashes carry their parameters, so they can
// be raised later without breaking stored ones.

const PARAMS = { N: 2 ** 16, r: 8, p: 2 } as const
const KEY_LENGTH = 32
const SALT_BYTES = 16
/** Enough for N·r·128 bytes with room to spare. */
const maxmem = (N: number, r: number) => 2 * 128 * N * r + 1024 * 1024

export const MIN_PASSWORD_LENGTH = 12
export const MAX_PASSWORD_LENGTH = 1024

function derive(
  password: string,
  salt: Buffer,
  params: { N: number; r: number; p: number },
  length: number,
): Promise<Buffer> {
  const options: ScryptOptions = { ...params, maxmem: maxmem(params.N, params.r) }
  return new Promise((resolve, reject) =>
    scrypt(password.normalize('NFKC'), salt, length, options, (error, key) => (error ? reject(error) : resolve(key))),
  )
}

/** `scrypt$N=65536,r=8,p=2$<salt>$<hash>`, base64url. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES)
  const key = await derive(password, salt, PARAMS, KEY_LENGTH)
  return `scrypt$N=${PARAMS.N},r=${PARAMS.r},p=${PARAMS.p}$${salt.toString('base64url')}$${key.toString('base64url')}`
}

const FORMAT = /^scrypt\$N=(\d{1,8}),r=(\d{1,3}),p=(\d{1,3})\$([\w-]{16,64})\$([\w-]{32,128})$/

/** Constant-time comparison; false (never a throw) for a malformed stored hash. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const match = FORMAT.exec(stored)
  if (match === null || password.length > MAX_PASSWORD_LENGTH) return false
  const [, N, r, p, salt, hash] = match
  const expected = Buffer.from(hash!, 'base64url')
  let key: Buffer
  try {
    key = await derive(
      password,
      Buffer.from(salt!, 'base64url'),
      { N: Number(N), r: Number(r), p: Number(p) },
      expected.length,
    )
  } catch {
    return false // parameters scrypt refuses (N not a power of two, too much memory)
  }
  return timingSafeEqual(key, expected)
}

let dummy: Promise<string> | undefined
/**
 * Spends the same work as a real check, for an email no member has: an unknown
 * address and a wrong password then take about the same time.
 */
export async function burnPasswordCheck(password: string): Promise<false> {
  dummy ??= hashPassword(randomBytes(16).toString('hex'))
  await verifyPassword(password, await dummy)
  return false
}

/** A password for a person to copy: 20 characters from a 57-letter alphabet without look-alikes (~116 bits). */
export function generatePassword(): string {
  const alphabet = 'abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789'
  const out: string[] = []
  while (out.length < 20) {
    for (const byte of randomBytes(32)) {
      // Rejection sampling: no modulo bias.
      if (byte < 228 && out.length < 20) out.push(alphabet[byte % 57]!)
    }
  }
  return out.join('')
}

/** Null when acceptable, else what is wrong. */
export function passwordProblem(password: string): string | null {
  if (password.length < MIN_PASSWORD_LENGTH) return `a password needs at least ${MIN_PASSWORD_LENGTH} characters`
  if (password.length > MAX_PASSWORD_LENGTH) return `a password has at most ${MAX_PASSWORD_LENGTH} characters`
  return null
}
