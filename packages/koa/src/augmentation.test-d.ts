// Type tests of the state augmentation, checked by `pnpm typecheck` (tsc): a wrong type fails it.
// Nothing here runs; the file is not a vitest test file.
import type { Context, Middleware, ParameterizedContext } from 'koa'
import { expectTypeOf } from 'vitest'
import { requirePermission, saikuAuth, type SaikuPrincipal, type WouldBeRefusal } from './index.js'

declare const ctx: Context

// Set by saikuAuth on an admitted request; absent before it ran or when report-only let a request through.
expectTypeOf(ctx.state.saiku).toEqualTypeOf<SaikuPrincipal | undefined>()
expectTypeOf(ctx.state.saikuUnverified).toEqualTypeOf<WouldBeRefusal | undefined>()

// The principal as the spec's GET /me/tenant answers it.
const principal = ctx.state.saiku!
expectTypeOf(principal.tenant.tenantId).toEqualTypeOf<string>()
expectTypeOf(principal.tenant.tenantSlug).toEqualTypeOf<string>()
expectTypeOf(principal.tenant.tier).toEqualTypeOf<string>()
expectTypeOf(principal.tenant.connectionName).toEqualTypeOf<string>()
expectTypeOf(principal.credential.permissions).toEqualTypeOf<readonly string[]>()
expectTypeOf(ctx.state.saikuUnverified!.status).toEqualTypeOf<number>()

// Nothing else appears on the principal or its tenant.
// @ts-expect-error: not a property of SaikuPrincipal
void principal.tenantId
// @ts-expect-error: not a field of the tenant
void principal.tenant.plan
// @ts-expect-error: the principal is set by the middleware, not assignable from a plain object
ctx.state.saiku = { tenant: { tenantId: 't' } }
// @types/koa lets DefaultState extend `any`, so other state keys stay open to apps: only ours are typed.
expectTypeOf(ctx.state.somethingElse).toBeAny()

// The augmentation reaches the context of any middleware on the default state.
const middleware: Middleware = (context: ParameterizedContext) => {
  expectTypeOf(context.state.saiku?.tenant.tier).toEqualTypeOf<string | undefined>()
}
expectTypeOf(middleware).toExtend<Middleware>()
expectTypeOf(saikuAuth).returns.toExtend<Middleware>()
expectTypeOf(requirePermission('keys:read')).toEqualTypeOf<Middleware>()
