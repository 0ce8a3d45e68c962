import { allowedAddressesProblem, canonicalAllowedAddresses } from './address-allowlist.js'
import { announceKeyStoreChange } from './store-events.js'
import type { KeyWriteContext } from './outbox.js'
import { SaikuConfigError, SaikuInputError, SaikuNotFoundError } from './errors.js'
import { isKeyId, KEY_ENVIRONMENTS, type KeyEnvironment } from './keys.js'
import { limitsForTenant, type TierTable, type WindowLimits, DEFAULT_TIERS } from './tiers.js'
import { addCounts, usageBucketsProblem, type UsageBucket, type UsageCounts, type UsageQuery } from './usage-history.js'

export type SubscriptionStatus = 'active' | 'trialing' | 'past_due' | 'canceled' | 'none'

export const SUBSCRIPTION_STATUSES: readonly SubscriptionStatus[] = Object.freeze([
  'active',
  'trialing',
  'past_due',
  'canceled',
  'none',
])

export interface Subscription {
  readonly status: SubscriptionStatus
  /** When a `trialing` subscription stops counting as active. */
  readonly trialEndsAt?: Date | null | undefined
  /**
   * The day billing periods start from (the day the trial or plan started): each period, and the
   * month window of a `perMonth` quota, starts on its UTC day of the month (see `billingPeriodAt`).
   * Absent: calendar months in UTC.
   */
  readonly billingAnchor?: Date | null | undefined
  /**
   * A downgrade waiting for the end of the billing period: the tier the tenant moves to at
   * `scheduledChangeAt`. Absent or null: none.
   */
  readonly scheduledTier?: string | null | undefined
  /** The subscription ends (becomes `canceled`) at `scheduledChangeAt`, the end of the period it was asked in. */
  readonly cancelAtPeriodEnd?: boolean | undefined
  /**
   * When `scheduledTier` or `cancelAtPeriodEnd` takes effect: the end of the billing period it
   * was asked in. Set exactly when one of them is.
   */
  readonly scheduledChangeAt?: Date | null | undefined
}

export interface TenantRecord {
  readonly tenantId: string
  readonly tenantSlug: string
  readonly tier: string
  readonly connectionName: string
  readonly subscription: Subscription
  /** Own limits: required on a custom tier (enterprise), and override the tier otherwise. */
  readonly limits?: WindowLimits | null | undefined
}

export interface ApiKeyRecord {
  readonly keyId: string
  readonly tenantId: string
  readonly label: string
  readonly environment: KeyEnvironment
  /** Hex digest from `digestApiKey`: the only form of the secret a store ever sees. */
  readonly secretDigest: string
  readonly permissions: readonly string[]
  readonly createdAt: Date
  readonly expiresAt: Date | null
  readonly revokedAt: Date | null
  readonly lastUsedAt: Date | null
  /**
   * The client addresses the key works from: IPv4 and IPv6 addresses and CIDR ranges in canonical
   * form (see `allowedAddressesProblem`). Absent, null or empty: any address.
   */
  readonly allowedAddresses?: readonly string[] | null | undefined
}

/** What a dashboard may show of a key: never its secret or digest. */
export interface ApiKeySummary {
  readonly keyId: string
  readonly label: string
  readonly environment: KeyEnvironment
  readonly permissions: readonly string[]
  readonly createdAt: Date
  readonly expiresAt: Date | null
  readonly lastUsedAt: Date | null
  /**
   * The addresses the key works from; absent (as `toKeySummary` writes it), null or empty when it works
   * from any. Null is accepted so that a record spread into a summary type-checks.
   */
  readonly allowedAddresses?: readonly string[] | null | undefined
}

/** What `KeyStore.updateKey` may change of a key; a field left out stays as it is. */
export interface KeyChanges {
  readonly label?: string | undefined
  /** Null or empty: any address. */
  readonly allowedAddresses?: readonly string[] | null | undefined
  /** Null: never expires. */
  readonly expiresAt?: Date | null | undefined
}

const KEY_CHANGE_FIELDS: readonly string[] = ['label', 'allowedAddresses', 'expiresAt']

/**
 * Checks `changes` for `KeyStore.updateKey`; returns an error message naming the field, or null when
 * they are fine. Stores call it before writing, as they check a record in `createKey`.
 */
export function keyChangesProblem(changes: unknown): string | null {
  if (typeof changes !== 'object' || changes === null || Array.isArray(changes))
    return 'changes must be an object with label, allowedAddresses or expiresAt'
  for (const field of Object.keys(changes)) {
    if (!KEY_CHANGE_FIELDS.includes(field))
      return `${JSON.stringify(field)} cannot be changed (only ${KEY_CHANGE_FIELDS.join(', ')})`
  }
  const { label, allowedAddresses, expiresAt } = changes as Record<string, unknown>
  if (label !== undefined) {
    const problem = labelProblem(label)
    if (problem !== null) return problem
  }
  const addressProblem = allowedAddressesProblem(allowedAddresses)
  if (addressProblem !== null) return addressProblem
  if (
    expiresAt !== undefined &&
    expiresAt !== null &&
    !(expiresAt instanceof Date && Number.isFinite(expiresAt.getTime()))
  )
    return 'expiresAt must be a valid Date or null'
  return null
}

/**
 * Where keys and tenants live; implemented by the user (or MemoryKeyStore).
 * Every method may reject: the authenticator applies its failure policy.
 * Run `describeKeyStoreConformance` from `@saiku/core/testing` against yours.
 */
export interface KeyStore {
  /** The key with this ID (matched case-sensitively), revoked or not; null when there is none. */
  findKey(keyId: string): Promise<ApiKeyRecord | null>
  findTenant(tenantId: string): Promise<TenantRecord | null>
  /**
   * Inserts a new key. Must reject if the key ID exists already. `context.rotatedFrom` names the key a
   * rotation replaces, for a store that writes an event with the key (`key.rotated` rather than `key.created`).
   */
  createKey(record: ApiKeyRecord, context?: KeyWriteContext): Promise<void>
  /** The tenant's keys that are not revoked, oldest first. */
  listKeys(tenantId: string): Promise<ApiKeySummary[]>
  /** Marks the key revoked at `revokedAt` (not the store's own time); false when it does not exist or was revoked already. */
  revokeKey(keyId: string, revokedAt: Date): Promise<boolean>
  /**
   * Optional: records when a key was last used. Called at most once per key per `lastUsedResolutionMs`,
   * by several processes out of order: an older `usedAt` never moves `lastUsedAt` back.
   */
  recordKeyUse?(keyId: string, usedAt: Date): Promise<void>
  /**
   * Optional: changes a key's label, allowed addresses or expiry (the fields `changes` names; check them
   * with `keyChangesProblem` and reject with a `SaikuInputError` when it finds one). Allowed addresses are
   * stored as `canonicalAllowedAddresses` writes them. False when the key does not exist or is revoked.
   * Announces the change like a revocation (`announceKeyStoreChange`, and the store's change feed), so every
   * authenticator reads the key afresh. Without it, key managers refuse allowlists, edits and graced rotations.
   */
  updateKey?(keyId: string, changes: KeyChanges): Promise<boolean>
  /**
   * Optional, for `usageHistory`: adds each bucket's counts to the stored bucket of the same tenant, key and
   * hour, creating it at zero when there is none (an additive upsert, in one transaction), so that several
   * processes write to one database without coordination. Check the buckets with `usageBucketsProblem`.
   */
  addUsage?(buckets: readonly UsageBucket[]): Promise<void>
  /** Optional, for `usageHistory`: the tenant's buckets whose hour starts in `[fromMs, toMs)` (of one key, when given). */
  readUsage?(query: UsageQuery): Promise<UsageBucket[]>
  /** Optional: deletes the buckets whose hour started before `beforeMs`; resolves with how many. */
  pruneUsage?(beforeMs: number): Promise<number>
}

/**
 * A store that can also write tenants: what an operator CLI or a billing route
 * needs. MemoryKeyStore and the database stores implement it.
 */
export interface TenantAdminStore extends KeyStore {
  /** Adds or replaces a tenant; a tier, limit or subscription change is a replace. */
  putTenant(tenant: TenantRecord): Promise<void> | void
  findTenantBySlug(tenantSlug: string): Promise<TenantRecord | null>
  listTenants(): Promise<TenantRecord[]>
  /**
   * Writes `next` as the tenant's subscription only while it is still `expected`
   * (every field: see {@link sameSubscription}), in one conditional write: of two
   * concurrent changes made from the same reading, one wins. With `plan`, the same
   * write also moves the tenant from tier `plan.expectedTier` to `plan.tier`, and only
   * while its tier is still `plan.expectedTier` (a plan change). Other fields are left
   * alone. False when the subscription or tier changed meanwhile or the tenant does not exist.
   */
  replaceSubscription(tenantId: string, expected: Subscription, next: Subscription, plan?: PlanChange): Promise<boolean>
}

/** A tier change made together with a subscription change (`replaceSubscription`). */
export interface PlanChange {
  /** The tier the tenant must still have for the write to happen. */
  readonly expectedTier: string
  /** The tier it moves to. */
  readonly tier: string
}

const msOf = (date: Date | null | undefined): number | null => (date == null ? null : date.getTime())

/**
 * Whether two subscriptions are the same in every field: status, trial end, billing anchor,
 * scheduled tier, cancellation at period end and when those take effect.
 */
export function sameSubscription(a: Subscription, b: Subscription): boolean {
  return (
    a.status === b.status &&
    msOf(a.trialEndsAt) === msOf(b.trialEndsAt) &&
    msOf(a.billingAnchor) === msOf(b.billingAnchor) &&
    (a.scheduledTier ?? null) === (b.scheduledTier ?? null) &&
    (a.cancelAtPeriodEnd ?? false) === (b.cancelAtPeriodEnd ?? false) &&
    msOf(a.scheduledChangeAt) === msOf(b.scheduledChangeAt)
  )
}

/**
 * A copy of `subscription` in its normal form: dates copied, and a field that holds its
 * default (null anchor, no scheduled tier, no cancellation) left out, as stores return it.
 */
export function normalSubscription(subscription: Subscription): Subscription {
  const { billingAnchor, scheduledTier, cancelAtPeriodEnd, scheduledChangeAt } = subscription
  return {
    status: subscription.status,
    trialEndsAt: subscription.trialEndsAt == null ? null : new Date(subscription.trialEndsAt),
    ...(billingAnchor == null ? {} : { billingAnchor: new Date(billingAnchor) }),
    ...(scheduledTier == null ? {} : { scheduledTier }),
    ...(cancelAtPeriodEnd === true ? { cancelAtPeriodEnd: true } : {}),
    ...(scheduledChangeAt == null ? {} : { scheduledChangeAt: new Date(scheduledChangeAt) }),
  }
}

export function toKeySummary(record: ApiKeyRecord): ApiKeySummary {
  return {
    keyId: record.keyId,
    label: record.label,
    environment: record.environment,
    permissions: [...record.permissions],
    createdAt: new Date(record.createdAt),
    expiresAt: record.expiresAt === null ? null : new Date(record.expiresAt),
    lastUsedAt: record.lastUsedAt === null ? null : new Date(record.lastUsedAt),
    ...(record.allowedAddresses == null || record.allowedAddresses.length === 0
      ? {}
      : { allowedAddresses: [...record.allowedAddresses] }),
  }
}

/** Label limits: what a dashboard can show and a JSON body can carry safely. */
export const MAX_LABEL_LENGTH = 100
/** The most distinct permissions one key or token carries: bounded so every token issued fits in a header that is read. */
export const MAX_PERMISSIONS = 32
/** The longest permission name. */
export const MAX_PERMISSION_LENGTH = 64

/**
 * The closed grammar of a permission, checked wherever one enters (a key, a token
 * request, a token's claims): `*`; `area:*`; or lower-case names joined by colons
 * (`keys:read`). No spaces or other characters, and a wildcard only in those two places.
 */
const PERMISSION_PATTERN = /^(?:\*|[a-z][a-z0-9_-]*(?::\*|(?::[a-z0-9_-]+)*))$/

/** Whether `value` is one permission of the grammar. */
export function isPermission(value: unknown): value is string {
  return typeof value === 'string' && value.length <= MAX_PERMISSION_LENGTH && PERMISSION_PATTERN.test(value)
}

// Cc (C0, DEL, C1) and Cf (format characters: bidi overrides, zero-width joiners, BOM, …) and lone surrogates.
const UNSAFE_LABEL_CHARACTER = /[\p{Cc}\p{Cf}]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/u

// A character that shows: not a space, not ignorable (Hangul fillers, variation selectors, …), not a
// mark with nothing to sit on, and not the blank Braille pattern.
const VISIBLE_CHARACTER = /[^\p{White_Space}\p{Default_Ignorable_Code_Point}\p{M}\u2800]/u

/** Checks a label; returns an error message, or null when it is fine. */
export function labelProblem(label: unknown): string | null {
  if (typeof label !== 'string' || label.trim().length === 0) return 'label must be a non-empty string'
  if (label.length > MAX_LABEL_LENGTH) return `label must be at most ${MAX_LABEL_LENGTH} characters`
  // Escaped in JSON, but they rewrite terminals, reorder text (U+202E) and log lines, or are not text at all.
  if (UNSAFE_LABEL_CHARACTER.test(label)) return 'label must not contain control or format characters'
  // A label nobody can see cannot tell keys apart in a list.
  if (!VISIBLE_CHARACTER.test(label)) return 'label must contain a visible character'
  return null
}

/** Checks permissions; returns an error message, or null when they are fine. Repeats count once. */
export function permissionsProblem(permissions: unknown): string | null {
  if (!Array.isArray(permissions)) return 'permissions must be an array of strings'
  for (const permission of permissions) {
    if (!isPermission(permission)) {
      return `permission ${JSON.stringify(permission)} must look like "keys:write", "keys:*" or "*" (lower-case names joined by colons, at most ${MAX_PERMISSION_LENGTH} characters)`
    }
  }
  if (new Set(permissions).size > MAX_PERMISSIONS)
    return `permissions must name at most ${MAX_PERMISSIONS} distinct permissions`
  return null
}

/** The permissions without repeats, in their first order. */
export function uniquePermissions(permissions: readonly string[]): string[] {
  return [...new Set(permissions)]
}

/**
 * Validates a tenant record before a store accepts it, so a tenant the
 * tier table cannot serve is refused when written, not when it first calls.
 */
export function validateTenantRecord(tenant: TenantRecord, tiers: TierTable = DEFAULT_TIERS): TenantRecord {
  const path = 'tenant'
  for (const field of ['tenantId', 'tenantSlug', 'tier', 'connectionName'] as const) {
    if (typeof tenant[field] !== 'string' || tenant[field].length === 0) {
      throw new SaikuConfigError(`${path}.${field}`, 'a non-empty string', tenant[field])
    }
  }
  const status = tenant.subscription?.status
  if (!SUBSCRIPTION_STATUSES.includes(status)) {
    throw new SaikuConfigError(`${path}.subscription.status`, `one of ${SUBSCRIPTION_STATUSES.join(', ')}`, status)
  }
  const trialEndsAt = tenant.subscription.trialEndsAt
  if (trialEndsAt != null && !(trialEndsAt instanceof Date && Number.isFinite(trialEndsAt.getTime()))) {
    throw new SaikuConfigError(`${path}.subscription.trialEndsAt`, 'a valid Date or null', trialEndsAt)
  }
  const billingAnchor = tenant.subscription.billingAnchor
  if (billingAnchor != null && !(billingAnchor instanceof Date && Number.isFinite(billingAnchor.getTime()))) {
    throw new SaikuConfigError(`${path}.subscription.billingAnchor`, 'a valid Date or null', billingAnchor)
  }
  validateScheduledChange(tenant, tiers)
  limitsForTenant(tiers, tenant)
  return tenant
}

/** A scheduled tier is one the table serves on its own limits; either change needs the date it takes effect. */
function validateScheduledChange(tenant: TenantRecord, tiers: TierTable): void {
  const path = 'tenant.subscription'
  const { scheduledTier, cancelAtPeriodEnd, scheduledChangeAt } = tenant.subscription
  if (scheduledTier != null) {
    const limits =
      typeof scheduledTier === 'string' && Object.hasOwn(tiers, scheduledTier) ? tiers[scheduledTier] : null
    if (limits == null || limits === 'custom') {
      const fixed = Object.keys(tiers).filter((tier) => tiers[tier] !== 'custom')
      throw new SaikuConfigError(`${path}.scheduledTier`, `null or one of ${fixed.join(', ')}`, scheduledTier)
    }
  }
  if (cancelAtPeriodEnd !== undefined && typeof cancelAtPeriodEnd !== 'boolean') {
    throw new SaikuConfigError(`${path}.cancelAtPeriodEnd`, 'a boolean', cancelAtPeriodEnd)
  }
  if (
    scheduledChangeAt != null &&
    !(scheduledChangeAt instanceof Date && Number.isFinite(scheduledChangeAt.getTime()))
  ) {
    throw new SaikuConfigError(`${path}.scheduledChangeAt`, 'a valid Date or null', scheduledChangeAt)
  }
  const scheduled = scheduledTier != null || cancelAtPeriodEnd === true
  if (scheduled !== (scheduledChangeAt != null)) {
    throw new SaikuConfigError(
      `${path}.scheduledChangeAt`,
      scheduled ? 'the Date the scheduled change takes effect' : 'null when no change is scheduled',
      scheduledChangeAt,
    )
  }
  if (scheduledTier != null && cancelAtPeriodEnd === true) {
    throw new SaikuConfigError(
      `${path}.scheduledTier`,
      'null when the subscription is canceled at period end',
      scheduledTier,
    )
  }
}

function copyTenant(tenant: TenantRecord): TenantRecord {
  return {
    ...tenant,
    subscription: normalSubscription(tenant.subscription),
    limits: tenant.limits == null ? null : { ...tenant.limits },
  }
}

function copyKey(record: ApiKeyRecord): ApiKeyRecord {
  return {
    ...toKeySummary(record),
    tenantId: record.tenantId,
    secretDigest: record.secretDigest,
    revokedAt: record.revokedAt === null ? null : new Date(record.revokedAt),
  }
}

/** The field a `keyChangesProblem` message is about, for the `SaikuInputError` that carries it. */
export function problemField(problem: string): string {
  const field = /^"?(label|allowedAddresses|expiresAt)\b/.exec(problem)?.[1]
  return field ?? 'changes'
}

/** A key's allowed addresses as a store keeps them: canonical, null for any address. */
export function storedAllowedAddresses(value: readonly string[] | null | undefined): string[] | null {
  const canonical = canonicalAllowedAddresses(value)
  return canonical.length === 0 ? null : canonical
}

/**
 * An in-process store for tests, examples and single-process servers.
 * Returns copies, so callers can never change what it holds by accident.
 */
/** Options of {@link MemoryKeyStore}. */
export interface MemoryKeyStoreOptions {
  /** Tenants written at construction. */
  readonly tenants?: readonly TenantRecord[]
  /** Tier table that tenants are validated against. Default: the spec's. */
  readonly tiers?: TierTable
  /** Usage buckets kept at most (one per tenant, key and hour); past it the earliest written go first. Default 100000. */
  readonly maxUsageBuckets?: number
}

export class MemoryKeyStore implements TenantAdminStore {
  readonly #tenants = new Map<string, TenantRecord>()
  readonly #keys = new Map<string, ApiKeyRecord>()
  readonly #tiers: TierTable
  readonly #usage = new Map<string, UsageBucket & Record<keyof UsageCounts, number>>()
  readonly #maxUsageBuckets: number

  constructor(options: MemoryKeyStoreOptions = {}) {
    this.#tiers = options.tiers ?? DEFAULT_TIERS
    const maxUsageBuckets = options.maxUsageBuckets ?? 100_000
    if (!Number.isSafeInteger(maxUsageBuckets) || maxUsageBuckets < 1)
      throw new SaikuConfigError('maxUsageBuckets', 'a positive integer', maxUsageBuckets)
    this.#maxUsageBuckets = maxUsageBuckets
    for (const tenant of options.tenants ?? []) this.putTenant(tenant)
  }

  /** Adds or replaces a tenant (a tier or subscription change is a replace). */
  putTenant(tenant: TenantRecord): void {
    validateTenantRecord(tenant, this.#tiers)
    for (const other of this.#tenants.values()) {
      if (other.tenantSlug === tenant.tenantSlug && other.tenantId !== tenant.tenantId) {
        throw new SaikuConfigError('tenant.tenantSlug', 'a slug no other tenant has', tenant.tenantSlug)
      }
    }
    this.#tenants.set(tenant.tenantId, copyTenant(tenant))
    announceKeyStoreChange(this, { kind: 'tenant', tenantId: tenant.tenantId })
  }

  async replaceSubscription(
    tenantId: string,
    expected: Subscription,
    next: Subscription,
    plan?: PlanChange,
  ): Promise<boolean> {
    const tenant = this.#tenants.get(tenantId)
    if (tenant === undefined || !sameSubscription(tenant.subscription, expected)) return false
    if (plan !== undefined && tenant.tier !== plan.expectedTier) return false
    this.putTenant({ ...tenant, ...(plan === undefined ? {} : { tier: plan.tier }), subscription: next })
    return true
  }

  async findTenant(tenantId: string): Promise<TenantRecord | null> {
    const tenant = this.#tenants.get(tenantId)
    return tenant === undefined ? null : copyTenant(tenant)
  }

  async findTenantBySlug(tenantSlug: string): Promise<TenantRecord | null> {
    for (const tenant of this.#tenants.values()) if (tenant.tenantSlug === tenantSlug) return copyTenant(tenant)
    return null
  }

  async listTenants(): Promise<TenantRecord[]> {
    return [...this.#tenants.values()].map(copyTenant)
  }

  async findKey(keyId: string): Promise<ApiKeyRecord | null> {
    const record = this.#keys.get(keyId)
    return record === undefined ? null : copyKey(record)
  }

  async createKey(record: ApiKeyRecord): Promise<void> {
    if (!isKeyId(record.keyId)) throw new SaikuInputError('keyId', 'createKey: malformed key ID')
    if (!KEY_ENVIRONMENTS.includes(record.environment))
      throw new SaikuInputError('environment', 'createKey: unknown environment')
    if (!/^[0-9a-f]{64}$/.test(record.secretDigest))
      throw new SaikuInputError('secretDigest', 'createKey: secretDigest must be a hex SHA-256 digest')
    if (this.#keys.has(record.keyId))
      throw new SaikuInputError('keyId', `createKey: key ID ${record.keyId} exists already`)
    if (!this.#tenants.has(record.tenantId)) throw new SaikuNotFoundError('tenant', 'createKey: unknown tenant')
    const addressProblem = allowedAddressesProblem(record.allowedAddresses)
    if (addressProblem !== null) throw new SaikuInputError('allowedAddresses', `createKey: ${addressProblem}`)
    this.#keys.set(
      record.keyId,
      copyKey({ ...record, allowedAddresses: storedAllowedAddresses(record.allowedAddresses) }),
    )
  }

  async updateKey(keyId: string, changes: KeyChanges): Promise<boolean> {
    const problem = keyChangesProblem(changes)
    if (problem !== null) throw new SaikuInputError(problemField(problem), `updateKey: ${problem}`)
    const record = this.#keys.get(keyId)
    if (record === undefined || record.revokedAt !== null) return false
    this.#keys.set(keyId, {
      ...record,
      ...(changes.label === undefined ? {} : { label: changes.label }),
      ...(changes.allowedAddresses === undefined
        ? {}
        : { allowedAddresses: storedAllowedAddresses(changes.allowedAddresses) }),
      ...(changes.expiresAt === undefined
        ? {}
        : { expiresAt: changes.expiresAt === null ? null : new Date(changes.expiresAt) }),
    })
    announceKeyStoreChange(this, { kind: 'key', keyId })
    return true
  }

  async listKeys(tenantId: string): Promise<ApiKeySummary[]> {
    const keys: ApiKeySummary[] = []
    for (const record of this.#keys.values()) {
      if (record.tenantId === tenantId && record.revokedAt === null) keys.push(toKeySummary(record))
    }
    return keys.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime())
  }

  async revokeKey(keyId: string, revokedAt: Date): Promise<boolean> {
    const record = this.#keys.get(keyId)
    if (record === undefined || record.revokedAt !== null) return false
    this.#keys.set(keyId, { ...record, revokedAt: new Date(revokedAt) })
    announceKeyStoreChange(this, { kind: 'key', keyId })
    return true
  }

  async recordKeyUse(keyId: string, usedAt: Date): Promise<void> {
    const record = this.#keys.get(keyId)
    // Uses may arrive out of order: an older one never moves lastUsedAt back.
    if (record !== undefined && (record.lastUsedAt === null || record.lastUsedAt.getTime() < usedAt.getTime()))
      this.#keys.set(keyId, { ...record, lastUsedAt: new Date(usedAt) })
  }

  /** Adds to the buckets it keeps, at most `maxUsageBuckets`: a window that forgets the earliest written first. */
  async addUsage(buckets: readonly UsageBucket[]): Promise<void> {
    const problem = usageBucketsProblem(buckets)
    if (problem !== null) throw new SaikuInputError('buckets', `addUsage: ${problem}`)
    for (const bucket of buckets) {
      const key = `${bucket.hourStartMs}\n${bucket.tenantId}\n${bucket.keyId ?? ''}`
      let kept = this.#usage.get(key)
      if (kept === undefined) {
        if (this.#usage.size >= this.#maxUsageBuckets) this.#usage.delete(this.#usage.keys().next().value!)
        kept = {
          tenantId: bucket.tenantId,
          keyId: bucket.keyId,
          hourStartMs: bucket.hourStartMs,
          admitted: 0,
          rateLimited: 0,
          quotaExceeded: 0,
          forbidden: 0,
          paymentRequired: 0,
        }
        this.#usage.set(key, kept)
      }
      addCounts(kept, bucket)
    }
  }

  async readUsage(query: UsageQuery): Promise<UsageBucket[]> {
    const found: UsageBucket[] = []
    for (const bucket of this.#usage.values()) {
      if (bucket.tenantId !== query.tenantId || bucket.hourStartMs < query.fromMs || bucket.hourStartMs >= query.toMs)
        continue
      if (query.keyId === undefined || bucket.keyId === query.keyId) found.push({ ...bucket })
    }
    return found.sort((a, b) => a.hourStartMs - b.hourStartMs)
  }

  async pruneUsage(beforeMs: number): Promise<number> {
    let pruned = 0
    for (const [key, bucket] of this.#usage)
      if (bucket.hourStartMs < beforeMs) {
        this.#usage.delete(key)
        pruned++
      }
    return pruned
  }
}
