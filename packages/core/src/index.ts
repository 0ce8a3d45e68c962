// @saiku/core: what an app needs. Adapters, store authors, JWT, rate-limiter-flexible and
// tests have entries of their own: @saiku/core/adapter, /store, /jwt, /rate-limiter-flexible, /testing.

export { createAuthenticator } from './authenticator.js'
export type { Authenticator, AuthenticatorStats } from './authenticator.js'
export type {
  AuthRequest,
  CostRequest,
  DecisionEvent,
  DecisionReason,
  SaikuPrincipal,
  TenantView,
  WouldBeRefusal,
} from './decision.js'

export { DEFAULTS } from './options.js'
export type {
  KeyStoreFailurePolicy,
  LimiterFailurePolicy,
  OptionDefaults,
  ResolvedOptions,
  SaikuOptions,
} from './options.js'
export type { PreflightMode } from './preflight.js'

export { MemoryKeyStore } from './store.js'
export type {
  ApiKeyRecord,
  ApiKeySummary,
  KeyChanges,
  KeyStore,
  MemoryKeyStoreOptions,
  PlanChange,
  Subscription,
  SubscriptionStatus,
  TenantAdminStore,
  TenantRecord,
} from './store.js'
export { createKeyManager } from './management.js'
export type {
  CreatedApiKey,
  CreateKeyInput,
  KeyManager,
  KeyManagerOptions,
  RotatedApiKey,
  RotateKeyInput,
  UpdateKeyInput,
} from './management.js'
export type { AddressAllowlist } from './address-allowlist.js'
export { API_KEY_PATTERN, isKeyId, mintApiKey, parseApiKey } from './keys.js'
export type { KeyEnvironment, MintedApiKey, ParsedApiKey } from './keys.js'
export type { KeyVerifier, VerificationFailure, VerifiedCredential, VerifyResult } from './verifier.js'
export type { StoreCallEnd } from './failure-budget.js'
export type { MetricsSettings } from './metrics.js'

export { DEFAULT_TIERS, limitsForTenant } from './tiers.js'
export { billingPeriodAt, dayWindowAt, monthStartDayOf, monthWindowAt } from './calendar.js'
export type { CalendarWindow } from './calendar.js'
export type { TenantLimitSource, TierLimits, TierTable, WindowLimits } from './tiers.js'
export { createMemoryLimiter } from './memory-limiter.js'
export type { MemoryLimiterBackend, MemoryLimiterOptions, QuotaCountRow, WindowKind } from './memory-limiter.js'
export type { LimitDecision, LimiterBackend, WindowName, WindowState } from './limiter.js'
export type { RateLimitHeaderMode } from './http.js'
export { usageFromDecision } from './usage.js'
export type { TenantUsage, WindowUsage } from './usage.js'
export type {
  KeyUsage,
  UsageBucket,
  UsageCounts,
  UsageGranularity,
  UsageHistory,
  UsageHistoryQuery,
  UsagePoint,
  UsageQuery,
} from './usage-history.js'

export { hasPermission, ownedByTenant } from './permissions.js'
export { clientKey } from './client-address.js'
export { reportedPath } from './reported-path.js'

export {
  isSaikuError,
  SaikuConfigError,
  SaikuCredentialExpiredError,
  SaikuError,
  SaikuHttpError,
  SaikuInputError,
  SaikuNotFoundError,
  SaikuPermissionError,
  SaikuStoreError,
} from './errors.js'
export type { AnySaikuError, SaikuErrorCode, StoreSource, WireCode } from './errors.js'
