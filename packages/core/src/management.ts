import { asStoreError, SaikuInputError, SaikuNotFoundError } from './errors.js'
import { digestApiKey, isKeyId, KEY_ENVIRONMENTS, mintApiKey, type KeyEnvironment } from './keys.js'
import { labelProblem, permissionsProblem, uniquePermissions, type ApiKeySummary, type KeyStore } from './store.js'
import { withTimeout } from './timeout.js'
import { announceKeyStoreChange, announcedDuring } from './store-events.js'

export interface CreateKeyInput {
  readonly label: string
  readonly permissions?: readonly string[]
  readonly environment?: KeyEnvironment
  readonly expiresAt?: Date | null
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
  /** Mints a successor with the same label, permissions, environment and expiry; the old key stays valid until revoked. */
  rotate(tenantId: string, keyId: string): Promise<CreatedApiKey | null>
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

  async function create(tenantId: string, input: CreateKeyInput): Promise<CreatedApiKey> {
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
    if ((await call('findTenant', () => store.findTenant(tenantId))) === null)
      throw new SaikuNotFoundError('tenant', 'Tenant does not exist.')

    // Key IDs carry 71 random bits; a collision is retried, never overwritten.
    for (let attempt = 0; ; attempt++) {
      const minted = mintApiKey(environment)
      const createdAt = new Date(now())
      const record = {
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
      }
      try {
        await call('createKey', () => store.createKey(record))
      } catch (error) {
        if (attempt < 2 && (await call('findKey', () => store.findKey(minted.keyId))) !== null) continue
        throw error
      }
      return {
        key: minted.key,
        keyId: minted.keyId,
        label: record.label,
        environment,
        permissions: [...permissions],
        createdAt,
        expiresAt,
        lastUsedAt: null,
      }
    }
  }

  async function ownedKey(tenantId: string, keyId: string) {
    if (!isKeyId(keyId)) return null
    const record = await call('findKey', () => store.findKey(keyId))
    // Another tenant's key is reported exactly like a missing one.
    return record === null || record.tenantId !== tenantId || record.revokedAt !== null ? null : record
  }

  return {
    create,
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
    async rotate(tenantId, keyId) {
      const old = await ownedKey(tenantId, keyId)
      if (old === null) return null
      const expired = old.expiresAt !== null && old.expiresAt.getTime() <= now()
      if (expired) return null
      return create(tenantId, {
        label: old.label,
        permissions: old.permissions,
        environment: old.environment,
        expiresAt: old.expiresAt,
      })
    },
  }
}
