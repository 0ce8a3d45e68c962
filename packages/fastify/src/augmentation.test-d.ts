// Type tests of the request declaration, checked by `pnpm typecheck` (tsc): a wrong type fails it.
// Nothing here runs; the file is not a vitest test file.
import type { FastifyPluginCallback, FastifyRequest, preHandlerHookHandler, RouteHandlerMethod } from 'fastify'
import { expectTypeOf } from 'vitest'
import { requirePermission, saikuAuth, saikuErrors, type SaikuPrincipal, type WouldBeRefusal } from './index.js'

declare const request: FastifyRequest

// Declared with decorateRequest('saiku', null): null until saikuAuth admits the request.
expectTypeOf(request.saiku).toEqualTypeOf<SaikuPrincipal | null>()
expectTypeOf(request.saikuUnverified).toEqualTypeOf<WouldBeRefusal | null>()

// The principal as the spec's GET /me/tenant answers it.
const principal = request.saiku!
expectTypeOf(principal.tenant.tenantId).toEqualTypeOf<string>()
expectTypeOf(principal.tenant.tier).toEqualTypeOf<string>()
expectTypeOf(principal.credential.permissions).toEqualTypeOf<readonly string[]>()

// Nothing else appears on the request or the principal.
// @ts-expect-error: not a property of the declared FastifyRequest
void request.saikuPrincipal
// @ts-expect-error: not a property of SaikuPrincipal
void principal.tenantId
// @ts-expect-error: the principal is set by the plugin, not assignable from a plain object
request.saiku = { tenant: { tenantId: 't' } }

// In a handler the declaration holds without any import of the types; the exports are Fastify plugins and hooks.
const handler: RouteHandlerMethod = async (req) => {
  expectTypeOf(req.saiku?.tenant.tier).toEqualTypeOf<string | undefined>()
  return req.saiku?.tenant
}
expectTypeOf(handler).toExtend<RouteHandlerMethod>()
expectTypeOf(saikuAuth).returns.toExtend<FastifyPluginCallback>()
expectTypeOf(saikuErrors).returns.toExtend<FastifyPluginCallback>()
expectTypeOf(requirePermission('keys:read')).toEqualTypeOf<preHandlerHookHandler>()
