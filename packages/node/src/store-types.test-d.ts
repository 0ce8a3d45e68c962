// Type tests, checked by `pnpm typecheck` (tsc): a store author and a key-management caller
// name every type from @saiku/node alone (strict pnpm puts @saiku/core out of an app's reach).
import type * as core from '@saiku/core'
import { expectTypeOf } from 'vitest'
import type {
  ApiKeyRecord,
  ApiKeySummary,
  Authenticator,
  CreatedApiKey,
  CreateKeyInput,
  DecisionEvent,
  KeyEnvironment,
  KeyManager,
  KeyStore,
  Subscription,
  SubscriptionStatus,
  TenantAdminStore,
  TenantRecord,
  TenantView,
  WindowLimits,
} from './index.js'

expectTypeOf<ApiKeyRecord>().toEqualTypeOf<core.ApiKeyRecord>()
expectTypeOf<ApiKeySummary>().toEqualTypeOf<core.ApiKeySummary>()
expectTypeOf<Authenticator>().toEqualTypeOf<core.Authenticator>()
expectTypeOf<CreatedApiKey>().toEqualTypeOf<core.CreatedApiKey>()
expectTypeOf<CreateKeyInput>().toEqualTypeOf<core.CreateKeyInput>()
expectTypeOf<DecisionEvent>().toEqualTypeOf<core.DecisionEvent>()
expectTypeOf<KeyEnvironment>().toEqualTypeOf<core.KeyEnvironment>()
expectTypeOf<KeyManager>().toEqualTypeOf<core.KeyManager>()
expectTypeOf<KeyStore>().toEqualTypeOf<core.KeyStore>()
expectTypeOf<Subscription>().toEqualTypeOf<core.Subscription>()
expectTypeOf<SubscriptionStatus>().toEqualTypeOf<core.SubscriptionStatus>()
expectTypeOf<TenantAdminStore>().toEqualTypeOf<core.TenantAdminStore>()
expectTypeOf<TenantRecord>().toEqualTypeOf<core.TenantRecord>()
expectTypeOf<TenantView>().toEqualTypeOf<core.TenantView>()
expectTypeOf<WindowLimits>().toEqualTypeOf<core.WindowLimits>()
