import {
  hasPermission,
  isKeyId,
  SaikuHttpError,
  type ApiKeySummary,
  type CreatedApiKey,
  type KeyManager,
  type SaikuPrincipal,
  type Subscription,
  type TenantAdminStore,
  type Authenticator,
  type UsageHistoryQuery,
} from '@saiku/core'
import { permissionsProblem } from '@saiku/core/store'
import type { RotatedApiKey } from '@saiku/core'
import { type TokenIssuer } from '@saiku/core/jwt'
import {
  billingView,
  changePlan,
  requestedTier,
  settledTenant,
  type BillingResult,
  type SettlementRecorder,
} from './billing.js'

// Framework-neutral route logic: the Express app (app.ts) maps its requests onto these functions.

export const TRIAL_DAYS = 14
/** Permissions a key can carry in this API. */
export const PERMISSIONS = ['keys:read', 'keys:write', 'billing:write', 'webhooks:read', 'webhooks:write'] as const

/** What each permission lets a key do, in one line: the Create key form shows it beside the box. */
export const PERMISSION_DESCRIPTIONS: Readonly<Record<(typeof PERMISSIONS)[number], string>> = {
  'keys:read': "List the tenant's API keys (IDs, labels, permissions; never a secret).",
  'keys:write': 'Create, edit, rotate and revoke API keys, never granting more than this key holds.',
  'billing:write': 'Start the trial, change the plan, and cancel or resume the subscription.',
  'webhooks:read': "List the tenant's webhook endpoints and their delivery log (never a signing secret).",
  'webhooks:write': 'Add and remove webhook endpoints, rotate their secrets, send test events and redeliver.',
}

export interface ApiResult {
  readonly status: number
  readonly body?: unknown
}

function keyView(key: ApiKeySummary) {
  return {
    keyId: key.keyId,
    label: key.label,
    environment: key.environment,
    permissions: key.permissions,
    createdAt: key.createdAt.toISOString(),
    expiresAt: key.expiresAt?.toISOString() ?? null,
    lastUsedAt: key.lastUsedAt?.toISOString() ?? null,
    allowedAddresses: key.allowedAddresses ?? [],
  }
}

function createdKeyView(key: CreatedApiKey) {
  return { ...keyView(key), secret: key.key }
}

function rotatedKeyView(key: RotatedApiKey) {
  return {
    ...createdKeyView(key),
    previousKey: { keyId: key.previousKey.keyId, expiresAt: key.previousKey.expiresAt?.toISOString() ?? null },
  }
}

export async function listKeys(keys: KeyManager, principal: SaikuPrincipal): Promise<ApiResult> {
  const listed = await keys.list(principal.tenant.tenantId)
  return { status: 200, body: { keys: listed.map(keyView) } }
}

function invalid(message: string): SaikuHttpError {
  return new SaikuHttpError('invalid_request', message)
}

/**
 * A request body as a record of the fields a route takes: a JSON object with no
 * other field, or nothing at all when the route needs none (`required: false`).
 */
export function bodyFields<K extends string>(
  body: unknown,
  allowed: readonly K[],
  required = true,
): Partial<Record<K, unknown>> {
  const expected = allowed.length === 0 ? 'no fields' : allowed.join(', ')
  if (body === undefined && !required) return {}
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw invalid(`Expected a JSON object with ${expected}.`)
  const unknown = Object.keys(body).filter((field) => !(allowed as readonly string[]).includes(field))
  if (unknown.length > 0) throw invalid(`Unknown field ${JSON.stringify(unknown[0])}; expected ${expected}.`)
  return body
}

function permissionList(value: unknown): string[] {
  const problem = permissionsProblem(value)
  if (problem !== null) throw invalid(`${problem}.`)
  return value as string[]
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|([+-])(\d{2}):(\d{2}))$/

/**
 * An RFC 3339 date-time (`2030-01-31T12:00:00Z`, an offset or fractions allowed)
 * naming a real calendar day, from year 1970 to 9999; null for anything else:
 * no rollover of 30 February, no other date formats, no six-digit years.
 */
export function parseRfc3339(text: unknown): Date | null {
  if (typeof text !== 'string') return null
  const match = RFC3339.exec(text)
  if (match === null) return null
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ]
  const offsetHours = match[10] === undefined ? 0 : Number(match[10])
  const offsetMinutes = match[11] === undefined ? 0 : Number(match[11])
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate()
  if (year < 1970 || month < 1 || month > 12 || day < 1 || day > daysInMonth) return null
  if (hour > 23 || minute > 59 || second > 59 || offsetHours > 23 || offsetMinutes > 59) return null
  const sign = match[9] === '-' ? -1 : 1
  const fraction = match[7] === undefined ? 0 : Math.floor(Number(match[7]) * 1000)
  const ms =
    Date.UTC(year, month - 1, day, hour, minute, second, fraction) - sign * (offsetHours * 60 + offsetMinutes) * 60_000
  const date = new Date(ms)
  return date.getUTCFullYear() > 9999 || date.getUTCFullYear() < 1970 ? null : date
}

/**
 * POST /me/api-keys: `{label, permissions?, expiresAt?}`. A new key never holds
 * more than the key that minted it; without `permissions` it gets the same ones,
 * so rotating a key keeps what it could do.
 */
/** Keys are managed with a key: a short-lived token must not outlive itself as a new key. */
function requireApiKey(principal: SaikuPrincipal, action: string): void {
  if (principal.credential.type !== 'api_key') throw new SaikuHttpError('forbidden', `Only an API key can ${action}.`)
}

export async function createKey(keys: KeyManager, principal: SaikuPrincipal, body: unknown): Promise<ApiResult> {
  requireApiKey(principal, 'mint API keys')
  const { label, permissions, expiresAt, allowedAddresses } = bodyFields(body, [
    'label',
    'permissions',
    'expiresAt',
    'allowedAddresses',
  ])
  const granted = principal.credential.permissions
  let wanted: readonly string[] = granted
  if (permissions !== undefined) {
    // The grammar first (400), then what the key holds (403).
    permissionList(permissions)
    const beyond = (permissions as string[]).filter((permission) => !hasPermission(principal, permission))
    if (beyond.length > 0) {
      throw new SaikuHttpError('forbidden', `A key cannot grant what it does not hold: ${beyond.join(', ')}.`)
    }
    wanted = permissions as string[]
  }
  // A new key never outlives the key that minted it.
  const ceiling = principal.credential.expiresAt
  let expiry: Date | null = ceiling
  if (expiresAt !== undefined && expiresAt !== null) {
    expiry = parseRfc3339(expiresAt)
    if (expiry === null)
      throw invalid('expiresAt must be an RFC 3339 date-time from 1970 to 9999, e.g. "2030-01-31T12:00:00Z".')
    if (ceiling !== null && expiry > ceiling)
      throw invalid(`expiresAt must not be later than this key's own expiry, ${ceiling.toISOString()}.`)
  }
  const created = await keys.create(principal.tenant.tenantId, {
    label: label as string,
    permissions: wanted,
    environment: principal.credential.environment,
    expiresAt: expiry,
    // Checked by the key manager: a 400 naming the entry.
    allowedAddresses: (allowedAddresses ?? null) as readonly string[] | null,
  })
  return { status: 201, body: createdKeyView(created) }
}

/** PATCH /me/api-keys/:keyId: `{label?, allowedAddresses?}`, at least one; another tenant's key is a 404. */
export async function updateKey(
  keys: KeyManager,
  principal: SaikuPrincipal,
  keyId: string,
  body: unknown,
): Promise<ApiResult> {
  requireApiKey(principal, 'change API keys')
  const fields = bodyFields(body, ['label', 'allowedAddresses'])
  if (fields.label === undefined && fields.allowedAddresses === undefined)
    throw invalid('Expected a JSON object with label, allowedAddresses (at least one).')
  if (!isKeyId(keyId)) throw new SaikuHttpError('not_found')
  const updated = await keys.update(principal.tenant.tenantId, keyId, {
    ...(fields.label === undefined ? {} : { label: fields.label as string }),
    ...(fields.allowedAddresses === undefined
      ? {}
      : { allowedAddresses: fields.allowedAddresses as readonly string[] | null }),
  })
  if (updated === null) throw new SaikuHttpError('not_found')
  return { status: 200, body: keyView(updated) }
}

/**
 * POST /me/api-keys/:keyId/rotate: `{graceSeconds}` (0 to 2592000), required, so that no old key is left
 * working by omission. The successor is minted only for a key the caller could have minted itself:
 * no more permissions, no later expiry, the same environment.
 */
export async function rotateKey(
  keys: KeyManager,
  principal: SaikuPrincipal,
  keyId: string,
  body: unknown,
): Promise<ApiResult> {
  requireApiKey(principal, 'rotate API keys')
  const { graceSeconds } = bodyFields(body, ['graceSeconds'])
  if (graceSeconds === undefined)
    throw invalid('graceSeconds is required: how long the old key keeps working, from 0 to 2592000 seconds.')
  if (!isKeyId(keyId)) throw new SaikuHttpError('not_found')
  const old = (await keys.list(principal.tenant.tenantId)).find((key) => key.keyId === keyId)
  if (old === undefined) throw new SaikuHttpError('not_found')
  const beyond = old.permissions.filter((permission) => !hasPermission(principal, permission))
  if (beyond.length > 0)
    throw new SaikuHttpError(
      'forbidden',
      `A key cannot rotate a key that holds more than it does: ${beyond.join(', ')}.`,
    )
  const ceiling = principal.credential.expiresAt
  if (ceiling !== null && (old.expiresAt === null || old.expiresAt > ceiling))
    throw new SaikuHttpError('forbidden', 'A key cannot rotate a key that outlives it.')
  if (old.environment !== principal.credential.environment)
    throw new SaikuHttpError(
      'forbidden',
      `A ${principal.credential.environment} key cannot rotate a ${old.environment} key.`,
    )
  const rotated = await keys.rotate(principal.tenant.tenantId, keyId, { graceSeconds: graceSeconds as number })
  if (rotated === null) throw new SaikuHttpError('not_found')
  return { status: 201, body: rotatedKeyView(rotated) }
}

/** DELETE /me/api-keys/:keyId: another tenant's key answers exactly like a missing one. */
export async function revokeKey(keys: KeyManager, principal: SaikuPrincipal, keyId: string): Promise<ApiResult> {
  requireApiKey(principal, 'revoke API keys')
  if (!isKeyId(keyId) || !(await keys.revoke(principal.tenant.tenantId, keyId))) throw new SaikuHttpError('not_found')
  return { status: 204 }
}

export async function getBilling(
  store: TenantAdminStore,
  principal: SaikuPrincipal,
  nowMs = Date.now(),
  record?: SettlementRecorder,
): Promise<ApiResult> {
  // Read through to the store (billing answers must not come from a cache), a period that ended applied first.
  return {
    status: 200,
    body: billingView(await settledTenant(store, principal.tenant.tenantId, nowMs, record), nowMs),
  }
}

/**
 * POST /me/billing/trial: one 14-day trial per tenant, never on top of a subscription.
 * The write is conditional on the subscription read: of concurrent requests, one starts it.
 * The trial's first day anchors the billing periods, unless an anchor is set already.
 */
export async function startTrial(
  store: TenantAdminStore,
  principal: SaikuPrincipal,
  nowMs = Date.now(),
  record?: SettlementRecorder,
): Promise<ApiResult> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const tenant = await settledTenant(store, principal.tenant.tenantId, nowMs, record)
    const current = tenant.subscription
    if (current.status === 'active')
      throw new SaikuHttpError('conflict', 'This tenant already has an active subscription.')
    if (current.trialEndsAt != null) throw new SaikuHttpError('conflict', 'This tenant has already used its trial.')
    const subscription: Subscription = {
      status: 'trialing',
      trialEndsAt: new Date(nowMs + TRIAL_DAYS * 86_400_000),
      billingAnchor: current.billingAnchor ?? new Date(nowMs),
    }
    // Changed since the read (another request, an operator): read again and decide on what is there now.
    if (await store.replaceSubscription(principal.tenant.tenantId, current, subscription)) {
      return { status: 201, body: billingView({ ...tenant, subscription }, nowMs) }
    }
  }
  throw new SaikuHttpError('service_unavailable', 'The subscription kept changing; retry shortly.')
}

/** POST /me/billing/plan `{tier}`: see {@link changePlan}. */
export async function postPlan(
  store: TenantAdminStore,
  principal: SaikuPrincipal,
  body: unknown,
  nowMs = Date.now(),
  record?: SettlementRecorder,
): Promise<BillingResult> {
  const { tier } = bodyFields(body, ['tier'])
  return changePlan(store, principal.tenant.tenantId, requestedTier(tier), nowMs, record)
}

/**
 * POST /me/tokens: trades the calling API key for a short-lived JWT carrying at
 * most its permissions (`{permissions?, ttlSeconds?}`). A token cannot buy another.
 */
export async function exchangeToken(tokens: TokenIssuer, principal: SaikuPrincipal, body: unknown): Promise<ApiResult> {
  requireApiKey(principal, 'be exchanged for a token')
  const { permissions, ttlSeconds } = bodyFields(body, ['permissions', 'ttlSeconds'], false)
  if (permissions !== undefined) permissionList(permissions)
  if (ttlSeconds !== undefined && !Number.isInteger(ttlSeconds)) throw invalid('ttlSeconds must be an integer.')
  const issued = await tokens.issue(principal.credential, {
    ...(permissions === undefined ? {} : { permissions: permissions as string[] }),
    ...(ttlSeconds === undefined ? {} : { ttlSeconds: ttlSeconds as number }),
  })
  return { status: 201, body: issued }
}

const HISTORY_PARAMETERS = ['from', 'to', 'granularity', 'keyId'] as const
const HOUR_MS = 3_600_000
/** What `from` defaults to, before `to`: a day of hours, or 30 days. */
const DEFAULT_SPAN_MS = { hour: 24 * HOUR_MS, day: 30 * 24 * HOUR_MS } as const

/**
 * The query of GET /me/usage/history: `from` and `to` as RFC 3339 date-times (default: the 24 hours,
 * or with `granularity=day` the 30 days, before now), `granularity` `hour` or `day`, and an optional
 * `keyId`. Anything else, or a parameter given twice, is a 400 naming it. Without `from`: 24 hourly (or 30 daily)
 * points, the last one holding `to`.
 */
export function usageHistoryQuery(query: Readonly<Record<string, unknown>>, nowMs: number): UsageHistoryQuery {
  const expected = HISTORY_PARAMETERS.join(', ')
  for (const [name, value] of Object.entries(query)) {
    if (!(HISTORY_PARAMETERS as readonly string[]).includes(name))
      throw invalid(`Unknown query parameter ${JSON.stringify(name)}; expected ${expected}.`)
    if (typeof value !== 'string') throw invalid(`The query parameter ${name} must be given once, as text.`)
  }
  const text = query as Partial<Record<(typeof HISTORY_PARAMETERS)[number], string>>
  const granularity = text.granularity ?? 'hour'
  if (granularity !== 'hour' && granularity !== 'day') throw invalid('granularity must be "hour" or "day".')
  const instant = (name: 'from' | 'to', fallback: number): number => {
    if (text[name] === undefined) return fallback
    const date = parseRfc3339(text[name])
    if (date === null) throw invalid(`${name} must be an RFC 3339 date-time, such as 2030-01-31T12:00:00Z.`)
    return date.getTime()
  }
  const to = instant('to', nowMs)
  // The last 24 hours (or 30 days) up to and with the one `to` falls in: 24 (or 30) points.
  const stepMs = granularity === 'hour' ? HOUR_MS : 24 * HOUR_MS
  const from = instant('from', Math.ceil(to / stepMs) * stepMs - DEFAULT_SPAN_MS[granularity])
  if (text.keyId !== undefined && !isKeyId(text.keyId)) throw invalid('keyId must be a key ID (12 letters and digits).')
  return { from, to, granularity, ...(text.keyId === undefined ? {} : { keyId: text.keyId }) }
}

/** GET /me/usage/history: the tenant's requests per hour or day, admitted and refused by reason, and by key. */
export async function getUsageHistory(
  authenticator: Authenticator,
  principal: SaikuPrincipal,
  query: Readonly<Record<string, unknown>>,
  nowMs: number,
): Promise<ApiResult> {
  const history = await authenticator.usageHistory(principal.tenant.tenantId, usageHistoryQuery(query, nowMs))
  return { status: 200, body: history }
}
