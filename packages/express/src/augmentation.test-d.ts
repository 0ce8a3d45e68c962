// Type tests of the request augmentation, checked by `pnpm typecheck` (tsc): a wrong type fails it.
// Nothing here runs; the file is not a vitest test file.
import type { NextFunction, Request, RequestHandler, Response } from 'express'
import { expectTypeOf } from 'vitest'
import { requirePermission, saikuAuth, type SaikuPrincipal, type WouldBeRefusal } from './index.js'

declare const req: Request

// Set by saikuAuth on an admitted request; absent before it ran or when report-only let a request through.
expectTypeOf(req.saiku).toEqualTypeOf<SaikuPrincipal | undefined>()
expectTypeOf(req.saikuUnverified).toEqualTypeOf<WouldBeRefusal | undefined>()

// The principal as the spec's GET /me/tenant answers it.
const principal = req.saiku!
expectTypeOf(principal.tenant.tenantId).toEqualTypeOf<string>()
expectTypeOf(principal.tenant.tenantSlug).toEqualTypeOf<string>()
expectTypeOf(principal.tenant.tier).toEqualTypeOf<string>()
expectTypeOf(principal.tenant.connectionName).toEqualTypeOf<string>()
expectTypeOf(principal.credential.permissions).toEqualTypeOf<readonly string[]>()
expectTypeOf(req.saikuUnverified!.status).toEqualTypeOf<number>()

// Nothing else appears on the request, the principal or its tenant.
// @ts-expect-error: not a property of the augmented Request
void req.saikuPrincipal
// @ts-expect-error: not a property of SaikuPrincipal
void principal.tenantId
// @ts-expect-error: not a field of the tenant
void principal.tenant.plan
// @ts-expect-error: the principal is set by the middleware, not assignable from a plain object
req.saiku = { tenant: { tenantId: 't' } }

// In a handler the augmentation holds without any import of the types, and the middleware are Express handlers.
const handler: RequestHandler = (request: Request, response: Response, _next: NextFunction) => {
  expectTypeOf(request.saiku?.tenant.tier).toEqualTypeOf<string | undefined>()
  response.json(request.saiku?.tenant)
}
expectTypeOf(handler).toExtend<RequestHandler>()
expectTypeOf(saikuAuth).returns.toExtend<RequestHandler>()
expectTypeOf(requirePermission('keys:read')).toEqualTypeOf<RequestHandler>()
