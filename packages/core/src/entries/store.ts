// @saiku/core/store: what a key store's author needs: rows, validation, change announcements.

export type {
  ApiKeyRecord,
  ApiKeySummary,
  KeyChanges,
  KeyStore,
  PlanChange,
  Subscription,
  SubscriptionStatus,
  TenantAdminStore,
  TenantRecord,
} from '../store.js'
export {
  isPermission,
  keyChangesProblem,
  labelProblem,
  MAX_LABEL_LENGTH,
  MAX_PERMISSION_LENGTH,
  MAX_PERMISSIONS,
  normalSubscription,
  permissionsProblem,
  sameSubscription,
  SUBSCRIPTION_STATUSES,
  toKeySummary,
  validateTenantRecord,
} from '../store.js'
export {
  allowedAddressesProblem,
  canonicalAllowedAddresses,
  compileAllowlist,
  MAX_ALLOWED_ADDRESSES,
} from '../address-allowlist.js'
export type { AddressAllowlist } from '../address-allowlist.js'
export { keyFromRow, tenantFromRow } from '../sql-rows.js'
export type { KeyRow, RowTime, TenantRow } from '../sql-rows.js'
export { digestApiKey } from '../keys.js'
export { usageBucketsProblem } from '../usage-history.js'
export type { UsageBucket, UsageCounts, UsageQuery } from '../usage-history.js'
export { announceKeyStoreChange, announceKeyStoreFeed, keyStoreTrustCapMs, onKeyStoreChange } from '../store-events.js'
export type { KeyChange, KeyStoreFeedState } from '../store-events.js'
export { createApiKeyVerifier } from '../verifier.js'
export { backgroundErrorHook, callHook, notifyHook, warnHookFailed } from '../user-hooks.js'
export type { HookAnswer } from '../user-hooks.js'
export type { ApiKeyVerifier, ApiKeyVerifierOptions, KeyState, VerifierPrimitives } from '../verifier.js'
export { keyCreatedEvent, keyEventData, newEventId, outboxEventProblem } from '../outbox.js'
export type { KeyWriteContext, OutboxEvent } from '../outbox.js'
