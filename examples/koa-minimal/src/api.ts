import {
  hasPermission,
  type TokenIssuer,
  isKeyId,
  SaikuHttpError,
  type ApiKeySummary,
  type CreatedApiKey,
  type KeyManager,
  type SaikuPrincipal,
  type Subscription,
  type TenantAdminStore,
  type TenantRecord,
} from '@saiku/core'

// Framework-neutral route logic: the Express server and the Koa example share it.

export const TRIAL_DAYS = 14
/** Permissions a key can carry in this API. */
export const PERMISSIONS = ['keys:read', 'keys:write', 'billing:write'] as const

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
  }
}

function createdKeyView(key: CreatedApiKey) {
  return { ...keyView(key), secret: key.key }
}

export async function listKeys(keys: KeyManager, principal: SaikuPrincipal): Promise<ApiResult> {
  const listed = await keys.list(principal.tenant.tenantId)
  return { status: 200, body: { keys: listed.map(keyView) } }
}

function invalid(message: string): SaikuHttpError {
  return new SaikuHttpError('invalid_request', message)
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
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('Expected a JSON object with a label.')
  const { label, permissions, expiresAt, ...rest } = body as Record<string, unknown>
  const unknown = Object.keys(rest)
  if (unknown.length > 0) throw invalid(`Unknown field ${JSON.stringify(unknown[0])}; expected label, permissions, expiresAt.`)
  const granted = principal.credential.permissions
  let wanted: readonly string[] = granted
  if (permissions !== undefined) {
    if (!Array.isArray(permissions) || !permissions.every((p): p is string => typeof p === 'string')) {
      throw invalid('permissions must be an array of strings.')
    }
    const beyond = permissions.filter((permission) => !hasPermission(principal, permission))
    if (beyond.length > 0) {
      throw new SaikuHttpError('forbidden', `A key cannot grant what it does not hold: ${beyond.join(', ')}.`)
    }
    wanted = permissions
  }
  // A new key never outlives the key that minted it.
  const ceiling = principal.credential.expiresAt
  let expiry: Date | null = ceiling
  if (expiresAt !== undefined && expiresAt !== null) {
    expiry = typeof expiresAt === 'string' ? new Date(expiresAt) : new Date(NaN)
    if (Number.isNaN(expiry.getTime())) throw invalid('expiresAt must be an ISO 8601 date-time.')
    if (ceiling !== null && expiry > ceiling) throw invalid(`expiresAt must not be later than this key's own expiry, ${ceiling.toISOString()}.`)
  }
  const created = await keys.create(principal.tenant.tenantId, {
    label: label as string,
    permissions: wanted,
    environment: principal.credential.environment,
    expiresAt: expiry,
  })
  return { status: 201, body: createdKeyView(created) }
}

/** DELETE /me/api-keys/:keyId: another tenant's key answers exactly like a missing one. */
export async function revokeKey(keys: KeyManager, principal: SaikuPrincipal, keyId: string): Promise<ApiResult> {
  requireApiKey(principal, 'revoke API keys')
  if (!isKeyId(keyId) || !(await keys.revoke(principal.tenant.tenantId, keyId))) throw new SaikuHttpError('not_found')
  return { status: 204 }
}

function billingView(subscription: Subscription, nowMs: number) {
  const trialEndsAt = subscription.trialEndsAt ?? null
  return {
    status: subscription.status === 'trialing' && trialEndsAt !== null && trialEndsAt.getTime() <= nowMs ? 'trial_ended' : subscription.status,
    trialEndsAt: trialEndsAt?.toISOString() ?? null,
    trialAvailable: subscription.status !== 'active' && trialEndsAt === null,
  }
}

async function currentTenant(store: TenantAdminStore, principal: SaikuPrincipal): Promise<TenantRecord> {
  // Read through to the store: billing answers must not come from a cache.
  const tenant = await store.findTenant(principal.tenant.tenantId)
  if (tenant === null) throw new SaikuHttpError('not_found')
  return tenant
}

export async function getBilling(store: TenantAdminStore, principal: SaikuPrincipal, nowMs = Date.now()): Promise<ApiResult> {
  return { status: 200, body: billingView((await currentTenant(store, principal)).subscription, nowMs) }
}

/** POST /me/billing/trial: one 14-day trial per tenant, never on top of a subscription. */
export async function startTrial(store: TenantAdminStore, principal: SaikuPrincipal, nowMs = Date.now()): Promise<ApiResult> {
  const tenant = await currentTenant(store, principal)
  const { status, trialEndsAt } = tenant.subscription
  if (status === 'active') throw new SaikuHttpError('conflict', 'This tenant already has an active subscription.')
  if (trialEndsAt != null) throw new SaikuHttpError('conflict', 'This tenant has already used its trial.')
  const subscription = { status: 'trialing' as const, trialEndsAt: new Date(nowMs + TRIAL_DAYS * 86_400_000) }
  await store.putTenant({ ...tenant, subscription })
  return { status: 201, body: billingView(subscription, nowMs) }
}

/**
 * POST /me/tokens: trades the calling API key for a short-lived JWT carrying at
 * most its permissions (`{permissions?, ttlSeconds?}`). A token cannot buy another.
 */
export async function exchangeToken(tokens: TokenIssuer, principal: SaikuPrincipal, body: unknown): Promise<ApiResult> {
  requireApiKey(principal, 'be exchanged for a token')
  const input = (body ?? {}) as Record<string, unknown>
  if (typeof input !== 'object' || Array.isArray(input)) throw invalid('Expected a JSON object.')
  const { permissions, ttlSeconds } = input
  if (permissions !== undefined && !(Array.isArray(permissions) && permissions.every((p) => typeof p === 'string'))) {
    throw invalid('permissions must be an array of strings.')
  }
  if (ttlSeconds !== undefined && typeof ttlSeconds !== 'number') throw invalid('ttlSeconds must be a number.')
  const issued = await tokens.issue(principal.credential, {
    ...(permissions === undefined ? {} : { permissions: permissions as string[] }),
    ...(ttlSeconds === undefined ? {} : { ttlSeconds }),
  })
  return { status: 201, body: issued }
}
