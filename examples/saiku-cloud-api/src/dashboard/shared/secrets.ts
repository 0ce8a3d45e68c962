import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'

// The dashboard's own random tokens (session IDs, CSRF tokens, form nonces) and how they are compared.

const digest = (value: string): Buffer => createHash('sha256').update(value).digest()
/** What the store keeps of a session ID: a leaked table holds no cookie that signs anyone in. */
export const sessionDigest = (id: string): string => digest(id).toString('base64url')
export const equalSecrets = (a: string, b: string): boolean => timingSafeEqual(digest(a), digest(b))
export const newToken = (): string => randomBytes(32).toString('base64url')
/** What newToken makes: checked before a submitted nonce reaches the store. */
export const NONCE = /^[\w-]{43}$/
