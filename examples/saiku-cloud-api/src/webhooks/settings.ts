import { ConfigError } from '../config.js'
import type { AddressPolicy } from './address-guard.js'
import { DEFAULT_TIMEOUT_MS } from './delivery.js'

export interface WebhookSettings {
  readonly policy: AddressPolicy
  /** One delivery attempt at most (WEBHOOKS_TIMEOUT_MS). */
  readonly timeoutMs: number
}

function flag(env: NodeJS.ProcessEnv, name: string): boolean {
  const value = env[name]
  if (value === undefined || value === '' || value === '0' || value === 'false') return false
  if (value === '1' || value === 'true') return true
  throw new ConfigError(`${name}: expected 1, true, 0 or false, got ${JSON.stringify(value)}`)
}

/**
 * WEBHOOKS_ALLOW_LOOPBACK=1 (development: http:// to a loopback host, and loopback addresses), WEBHOOKS_ALLOW_PRIVATE=1
 * (receivers on private networks), WEBHOOKS_TIMEOUT_MS (default 10000, at most 60000). Link-local addresses, the
 * cloud metadata service among them, are refused whatever is set.
 */
export function readWebhookSettings(env: NodeJS.ProcessEnv = process.env): WebhookSettings {
  const timeoutText = env.WEBHOOKS_TIMEOUT_MS
  const timeoutMs = timeoutText === undefined || timeoutText === '' ? DEFAULT_TIMEOUT_MS : Number(timeoutText)
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 60_000)
    throw new ConfigError(
      `WEBHOOKS_TIMEOUT_MS: expected whole milliseconds from 100 to 60000, got ${JSON.stringify(timeoutText)}`,
    )
  return {
    policy: { allowLoopback: flag(env, 'WEBHOOKS_ALLOW_LOOPBACK'), allowPrivate: flag(env, 'WEBHOOKS_ALLOW_PRIVATE') },
    timeoutMs,
  }
}
