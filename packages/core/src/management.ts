import { allowedAddressesProblem, canonicalAllowedAddresses } from './address-allowlist.js'
import { asStoreError, SaikuConfigError, SaikuInputError, SaikuNotFoundError } from './errors.js'
import { digestApiKey, isKeyId, KEY_ENVIRONMENTS, mintApiKey, type KeyEnvironment } from './keys.js'
import {
  labelProblem,
  permissionsProblem,
  toKeySummary,
  uniquePermissions,
  type ApiKeyRecord,
  type ApiKeySummary,
  type KeyChanges,
  type KeyStore,
} from './store.js'
import { withTimeout } from './timeout.js'
import type { KeyWriteContext } from './outbox.js'
import { announceKeyStoreChange, announcedDuring } from './store-events.js'

export interface CreateKeyInput {
  readonly label: string
  readonly permissions?: readonly string[]
  readonly environment?: KeyEnvironment
  readonly expiresAt?: Date | null
  /**
   * IPv4 and IPv6 addresses and CIDR ranges the key works from (at most 32); null or empty: any.
   * Needs a store with `updateKey`, the sign that it keeps them.
   */
  readonly allowedAddresses?: readonly string[] | null
}

/** What `KeyManager.update` may change; a field left out stays as it is. */
export interface UpdateKeyInput {
  readonly label?: string
  /** Null or empty: any address. */
  readonly allowedAddresses?: readonly string[] | null
}

export interface RotateKeyInput {
  /**
   * How long the old key keeps working, in seconds: 0 ends it at once, at most 2,592,000 (30 days).
   * Left out: the old key works until revoked (or its own expiry). Needs a store with `updateKey`.
   */
  readonly graceSeconds?: number
}

/** The longest grace a rotation gives the old key: 30 days. */
export const MAX_ROTATION_GRACE_SECONDS = 2_592_000

/** A rotation's new key, and when the key it replaces stops working. */
export interface RotatedApiKey extends CreatedApiKey {
  readonly previousKey: { readonly keyId: string; readonly expiresAt: Date | null }
}

/** A key at the one moment its secret is known. */
export interface CreatedApiKey extends ApiKeySummary {
  /** The full key. It is returned here once and never stored. */
  readonly key: string
}

/**
 * Errors: a bad `input` is a SaikuInputError naming its field, an unknown tenant a
 * SaikuNotFoundError, a store that fails or hangs a SaikuStoreError. The adapters'
 * error handlers answer them with a 400, 404 and 503.
 */
export interface KeyManager {
  /** Mints a key for the tenant; the store receives only its digest. */
  create(tenantId: string, input: CreateKeyInput): Promise<CreatedApiKey>
  list(tenantId: string): Promise<ApiKeySummary[]>
  /** Revokes one of the tenant's keys. False (answer 404) when it is unknown, revoked, or another tenant's. */
  revoke(tenantId: string, keyId: string): Promise<boolean>
  /**
   * Changes one of the tenant's keys: its label, its allowed addresses. Null (answer 404) when it is
   * unknown, revoked, expired or another tenant's. A SaikuConfigError when the store has no `updateKey`.
   * Every authenticator of the store drops the key from its cache (and, through a change feed, every process).
   */
  update(tenantId: string, keyId: string, input: UpdateKeyInput): Promise<ApiKeySummary | null>
  /**
   * Mints a successor with the same label, permissions, environment, allowed addresses and expiry (a
   * rotation renews the secret, not the key's lifetime). With `graceSeconds`, the old key then expires at
   * now + grace, or at its own expiry when that comes first; without it, the old key stays valid until
   * revoked. Null (answer 404) when the key is unknown, revoked, expired or another tenant's.
   */
  rotate(tenantId: string, keyId: string, input?: RotateKeyInput): Promise<RotatedApiKey | null>
}

export interface KeyManagerOptions {
  readonly pepper?: string | Buffer | undefined
  readonly now?: (() => number) | undefined
  /** Deadline for each store call. Default 5000. */
  readonly timeoutMs?: number | undefined
}

/** Key management for dashboards and CLIs: create, list, revoke, rotate. */
export function createKeyManager(store: KeyStore, options: KeyManagerOptions = {}): KeyManager {
  const now = options.now ?? ((): number => Date.now())
  const timeoutMs = options.timeoutMs ?? 5_000
  // Every store call: a failure or a hang is a SaikuStoreError (503), never a 500.
  const call = <T>(what: string, run: () => Promise<T> | T): Promise<T> => {
    let pending: Promise<T>
    try {
      pending = Promise.resolve(run())
    } catch (error) {
      return Promise.reject(asStoreError(error, 'key_store', `key store ${what} failed`))
    }
    return withTimeout(pending, timeoutMs, 'key_store', `key store ${what}`)
  }

  async function create(tenantId: string, input: CreateKeyInput, context?: KeyWriteContext): Promise<CreatedApiKey> {
    if (typeof input !== 'object' || input === null)
      throw new SaikuInputError('input', 'Expected an object with a label.')
    const labelError = labelProblem(input.label)
    if (labelError !== null) throw new SaikuInputError('label', `${labelError}.`)
    const permissionsError = permissionsProblem(input.permissions ?? [])
    if (permissionsError !== null) throw new SaikuInputError('permissions', `${permissionsError}.`)
    const permissions = uniquePermissions(input.permissions ?? [])
    const environment = input.environment ?? 'live'
    if (!KEY_ENVIRONMENTS.includes(environment))
      throw new SaikuInputError('environment', 'environment must be "live" or "test".')
    const expiresAt = input.expiresAt ?? null
    if (expiresAt !== null && !(expiresAt instanceof Date && expiresAt.getTime() > now())) {
      throw new SaikuInputError('expiresAt', 'expiresAt must be a date in the future.')
    }
    const addressProblem = allowedAddressesProblem(input.allowedAddresses)
    if (addressProblem !== null) throw new SaikuInputError('allowedAddresses', `${addressProblem}.`)
    const allowedAddresses = canonicalAllowedAddresses(input.allowedAddresses)
    if (allowedAddresses.length > 0) requireUpdateKey('an allowlist')
    if ((await call('findTenant', () => store.findTenant(tenantId))) === null)
      throw new SaikuNotFoundError('tenant', 'Tenant does not exist.')

    // Key IDs carry 71 random bits; a collision is retried, never overwritten.
    for (let attempt = 0; ; attempt++) {
      const minted = mintApiKey(environment)
      const createdAt = new Date(now())
      const record: ApiKeyRecord = {
        keyId: minted.keyId,
        tenantId,
        label: input.label,
        environment,
        secretDigest: digestApiKey(minted.key, options.pepper),
        permissions: [...permissions],
        createdAt,
        expiresAt,
        revokedAt: null,
        lastUsedAt: null,
        ...(allowedAddresses.length === 0 ? {} : { allowedAddresses }),
      }
      try {
        await call('createKey', () =>
          context === undefined ? store.createKey(record) : store.createKey(record, context),
        )
      } catch (error) {
        if (attempt < 2 && (await call('findKey', () => store.findKey(minted.keyId))) !== null) continue
        throw error
      }
      if (allowedAddresses.length > 0) await checkKept(minted.keyId, allowedAddresses, 'createKey')
      return {
        key: minted.key,
        keyId: minted.keyId,
        label: record.label,
        environment,
        permissions: [...permissions],
        createdAt,
        expiresAt,
        lastUsedAt: null,
        ...(allowedAddresses.length === 0 ? {} : { allowedAddresses: [...allowedAddresses] }),
      }
    }
  }

  async function ownedKey(tenantId: string, keyId: string) {
    if (typeof keyId !== 'string' || !isKeyId(keyId)) return null
    const record = await call('findKey', () => store.findKey(keyId))
    // Another tenant's key is reported exactly like a missing one.
    return record === null || record.tenantId !== tenantId || record.revokedAt !== null ? null : record
  }

  /** A store that cannot change a key could not be trusted to keep a restriction either. */
  function requireUpdateKey(what: string): void {
    if (typeof store.updateKey !== 'function') {
      throw new SaikuConfigError(
        'store.updateKey',
        `a KeyStore method to keep ${what} (MemoryKeyStore, @saiku/sqlite and @saiku/postgres have it)`,
        (store as unknown as Record<string, unknown>).updateKey,
      )
    }
  }

  /**
   * Reads the key back: a store that dropped its allowed addresses would leave it working from anywhere.
   * Such a key is revoked at once, and the store reported as misconfigured.
   */
  async function checkKept(keyId: string, expected: readonly string[], method: string): Promise<void> {
    const stored = await call('findKey', () => store.findKey(keyId))
    const kept = stored?.allowedAddresses ?? []
    if (kept.length === expected.length && kept.every((entry, index) => entry === expected[index])) return
    await call('revokeKey', () => store.revokeKey(keyId, new Date(now())))
    announceKeyStoreChange(store, { kind: 'key', keyId })
    throw new SaikuConfigError(
      `store.${method}`,
      `a KeyStore that keeps a key's allowedAddresses as canonicalAllowedAddresses writes them (key ${keyId} was revoked)`,
      kept,
    )
  }

  /** Writes `changes` through `updateKey`, announced once whether or not the store announces it itself. */
  async function writeChanges(keyId: string, changes: KeyChanges): Promise<boolean> {
    const change = { kind: 'key', keyId } as const
    const { result: updated, heard } = await announcedDuring(store, change, () =>
      call('updateKey', () => store.updateKey!(keyId, changes)),
    )
    if (!heard) announceKeyStoreChange(store, change)
    return updated
  }

  function live(record: ApiKeyRecord | null): ApiKeyRecord | null {
    return record === null || (record.expiresAt !== null && record.expiresAt.getTime() <= now()) ? null : record
  }

  async function update(tenantId: string, keyId: string, input: UpdateKeyInput): Promise<ApiKeySummary | null> {
    if (typeof input !== 'object' || input === null || Array.isArray(input))
      throw new SaikuInputError('input', 'Expected an object with label or allowedAddresses.')
    for (const field of Object.keys(input)) {
      if (field !== 'label' && field !== 'allowedAddresses')
        throw new SaikuInputError(field, `${field} cannot be changed; only label and allowedAddresses can.`)
    }
    const changes: { label?: string; allowedAddresses?: readonly string[] | null } = {}
    if (input.label !== undefined) {
      const labelError = labelProblem(input.label)
      if (labelError !== null) throw new SaikuInputError('label', `${labelError}.`)
      changes.label = input.label
    }
    if (input.allowedAddresses !== undefined) {
      const addressProblem = allowedAddressesProblem(input.allowedAddresses)
      if (addressProblem !== null) throw new SaikuInputError('allowedAddresses', `${addressProblem}.`)
      const canonical = canonicalAllowedAddresses(input.allowedAddresses)
      changes.allowedAddresses = canonical.length === 0 ? null : canonical
    }
    requireUpdateKey('an edit')
    if (live(await ownedKey(tenantId, keyId)) === null) return null
    if (!(await writeChanges(keyId, changes))) return null
    const record = live(await call('findKey', () => store.findKey(keyId)))
    if (record === null || record.revokedAt !== null) return null
    if (changes.allowedAddresses !== undefined) await checkKept(keyId, changes.allowedAddresses ?? [], 'updateKey')
    return toKeySummary(record)
  }

  async function rotate(tenantId: string, keyId: string, input: RotateKeyInput = {}): Promise<RotatedApiKey | null> {
    if (typeof input !== 'object' || input === null || Array.isArray(input))
      throw new SaikuInputError('input', 'Expected an object with graceSeconds.')
    const graceSeconds = input.graceSeconds
    if (
      graceSeconds !== undefined &&
      !(Number.isSafeInteger(graceSeconds) && graceSeconds >= 0 && graceSeconds <= MAX_ROTATION_GRACE_SECONDS)
    ) {
      throw new SaikuInputError(
        'graceSeconds',
        `graceSeconds must be a whole number of seconds from 0 to ${MAX_ROTATION_GRACE_SECONDS} (30 days).`,
      )
    }
    if (graceSeconds !== undefined) requireUpdateKey('a rotation grace period')
    const old = live(await ownedKey(tenantId, keyId))
    if (old === null) return null
    const created = await create(
      tenantId,
      {
        label: old.label,
        permissions: old.permissions,
        environment: old.environment,
        expiresAt: old.expiresAt,
        allowedAddresses: old.allowedAddresses ?? null,
      },
      // The store may write the successor's event as a rotation of the old key.
      { rotatedFrom: keyId },
    )
    if (graceSeconds === undefined) return { ...created, previousKey: { keyId, expiresAt: old.expiresAt } }
    const graceEndsMs = now() + graceSeconds * 1000
    // A grace never lengthens the old key's life.
    const endsAt =
      old.expiresAt !== null && old.expiresAt.getTime() <= graceEndsMs ? old.expiresAt : new Date(graceEndsMs)
    let ended: boolean
    try {
      ended = endsAt === old.expiresAt || (await writeChanges(keyId, { expiresAt: endsAt }))
    } catch (error) {
      // The new key's secret is never shown: it must not outlive the failed rotation.
      await Promise.resolve(store.revokeKey(created.keyId, new Date(now()))).catch(() => false)
      announceKeyStoreChange(store, { kind: 'key', keyId: created.keyId })
      throw error
    }
    // Revoked meanwhile: the successor stands, the old key is over already.
    return { ...created, previousKey: { keyId, expiresAt: ended ? endsAt : new Date(now()) } }
  }

  return {
    create: (tenantId, input) => create(tenantId, input),
    list: (tenantId) => call('listKeys', () => store.listKeys(tenantId)),
    async revoke(tenantId, keyId) {
      if ((await ownedKey(tenantId, keyId)) === null) return false
      // Stores that announce their own revocations are not announced twice (one publish per revocation).
      const change = { kind: 'key', keyId } as const
      const { result: revoked, heard } = await announcedDuring(store, change, () =>
        call('revokeKey', () => store.revokeKey(keyId, new Date(now()))),
      )
      if (!heard) announceKeyStoreChange(store, change)
      return revoked
    },
    update,
    rotate,
  }
}
