export { createAuthenticator, requestPath, routePath, usageFromDecision } from './pipeline.js'
export { clientKey } from './client-address.js'
export { reportedPath } from './reported-path.js'
export type {
  AdmittedDecision,
  AuthDecision,
  Authenticator,
  AuthenticatorStats,
  AuthRequest,
  CostRequest,
  DecisionEvent,
  DecisionReason,
  UnverifiedDecision,
  WouldBeRefusal,
  SaikuPrincipal,
  TenantUsage,
  TenantView,
  WindowUsage,
} from './pipeline.js'

export { resolveOptions } from './options.js'
export type { KeyStoreFailurePolicy, LimiterFailurePolicy, ResolvedOptions, SaikuOptions } from './options.js'

export {
  API_KEY_LENGTH,
  API_KEY_PATTERN,
  digestApiKey,
  digestsEqual,
  isKeyId,
  KEY_ENVIRONMENTS,
  keyFingerprint,
  mintApiKey,
  parseApiKey,
  withChecksum,
} from './keys.js'
export type { KeyEnvironment, MintedApiKey, ParsedApiKey } from './keys.js'

export { createApiKeyVerifier } from './verifier.js'
export type {
  ApiKeyVerifier,
  ApiKeyVerifierOptions,
  KeyVerifier,
  VerificationFailure,
  VerifiedCredential,
  VerifierPrimitives,
  VerifyResult,
} from './verifier.js'

export {
  isPermission,
  labelProblem,
  MAX_LABEL_LENGTH,
  MAX_PERMISSION_LENGTH,
  MAX_PERMISSIONS,
  MemoryKeyStore,
  permissionsProblem,
  sameSubscription,
  SUBSCRIPTION_STATUSES,
  toKeySummary,
  uniquePermissions,
  validateTenantRecord,
} from './store.js'
export type { ApiKeyRecord, ApiKeySummary, KeyStore, Subscription, SubscriptionStatus, TenantAdminStore, TenantRecord } from './store.js'

export { keyFromRow, tenantFromRow } from './sql-rows.js'
export type { KeyRow, TenantRow } from './sql-rows.js'
export { createKeyManager } from './management.js'
export type { CreatedApiKey, CreateKeyInput, KeyManager, KeyManagerOptions } from './management.js'
export { announceKeyStoreChange, onKeyStoreChange } from './changes.js'
export type { KeyChange } from './changes.js'

export { DEFAULT_TIERS, limitsForTenant, resolveTierTable, validateWindowLimits } from './tiers.js'
export type { TenantLimitSource, TierLimits, TierTable, WindowLimits } from './tiers.js'

export { createCompositeVerifier, createJwtVerifier, createTokenIssuer } from './jwt.js'
export type {
  IssuedToken,
  JwtAlgorithm,
  JwtClaims,
  JwtCredentialMapper,
  JwtVerifierOptions,
  TokenIssuer,
  TokenIssuerOptions,
} from './jwt.js'
export { createRateLimiterBackend } from './limiter.js'
export { createMemoryLimiter } from './memory-limiter.js'
export type { MemoryLimiterBackend, MemoryLimiterOptions, WindowKind } from './memory-limiter.js'
export type {
  LimitDecision,
  LimiterBackend,
  RateLimiterBackendOptions,
  RateLimiterFactory,
  RateLimiterFactoryOptions,
  WindowName,
  WindowState,
} from './limiter.js'

export {
  BODY_HEADERS,
  bearerChallenge,
  checkRealm,
  DEFAULT_REALM,
  errorBody,
  errorResponse,
  JSON_CONTENT_TYPE,
  RATE_LIMIT_HEADER_MODES,
  rateLimitPolicy,
  retryAfterSeconds,
} from './http.js'
export type { ChallengeError, ErrorResponse, HeaderMap, RateLimitHeaderMode } from './http.js'

export { extractBearer, MAX_TOKEN_LENGTH } from './bearer.js'
export type { BearerCredentials, CredentialSource } from './bearer.js'

export { checkPermissions, hasPermission, ownedByTenant, permissionGuard, validatePermissionList } from './permissions.js'
export type { PermissionGuard, PermissionGuardArguments, PermissionGuardOptions } from './permissions.js'
export { errorResponseFor, resolveSaikuErrorsOptions } from './error-response.js'
export type { ErrorResponseOptions, ResolvedSaikuErrorsOptions, SaikuErrorsOptions, ThrownErrorResponse } from './error-response.js'

export {
  DEFAULT_MESSAGES,
  ERROR_STATUS,
  isSaikuError,
  SaikuConfigError,
  SaikuCredentialExpiredError,
  SaikuError,
  SaikuHttpError,
  SaikuInputError,
  SaikuNotFoundError,
  SaikuPermissionError,
  SaikuStoreError,
  describeSecret,
  redactUrl,
} from './errors.js'
export type { AnySaikuError, SaikuErrorCode, StoreSource, WireCode } from './errors.js'
