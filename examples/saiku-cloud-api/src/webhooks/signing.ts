import { createHmac, randomBytes } from 'node:crypto'

// The Standard Webhooks scheme: `webhook-id`, `webhook-timestamp` (seconds), and `webhook-signature`, a
// space-separated list of `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per secret in use.

const SECRET_PREFIX = 'whsec_'
/** A signing secret: `whsec_` and 32 random bytes, base64. */
export function newSigningSecret(): string {
  return `${SECRET_PREFIX}${randomBytes(32).toString('base64')}`
}

const SECRET = /^whsec_[A-Za-z0-9+/]{43}=$/

/** Whether `value` is a secret this server made (what a stored row must hold). */
export function isSigningSecret(value: unknown): value is string {
  return typeof value === 'string' && SECRET.test(value)
}

/** One signature: `v1,` and the base64 HMAC-SHA256, keyed by the secret's bytes, of `id.timestamp.body`. */
export function signatureOf(secret: string, id: string, timestampS: number, body: string): string {
  const key = Buffer.from(secret.slice(SECRET_PREFIX.length), 'base64')
  return `v1,${createHmac('sha256', key).update(`${id}.${timestampS}.${body}`).digest('base64')}`
}

/**
 * The three headers of a delivery. Every secret given signs it (the current one, then the one a rotation
 * replaced while it is still honoured), so a receiver holding either verifies it.
 */
export function signedHeaders(
  secrets: readonly string[],
  id: string,
  timestampS: number,
  body: string,
): Record<'webhook-id' | 'webhook-timestamp' | 'webhook-signature', string> {
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestampS),
    'webhook-signature': secrets.map((secret) => signatureOf(secret, id, timestampS, body)).join(' '),
  }
}
