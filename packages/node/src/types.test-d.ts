// Type tests, checked by `pnpm typecheck` (tsc): a wrong type fails it. Nothing here runs.
import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http'
import { expectTypeOf } from 'vitest'
import {
  MemoryKeyStore,
  requirePermission,
  saikuAuth,
  saikuErrors,
  saikuUnverified,
  withSaiku,
  type SaikuPrincipal,
  type WouldBeRefusal,
} from './index.js'

declare const req: IncomingMessage
declare const res: ServerResponse
const auth = saikuAuth(new MemoryKeyStore())

// undefined: the refusal is written; null: report-only let failing credentials through; else the principal.
expectTypeOf(auth(req, res)).toEqualTypeOf<Promise<SaikuPrincipal | null | undefined>>()
expectTypeOf(saikuUnverified(req)).toEqualTypeOf<WouldBeRefusal | undefined>()
expectTypeOf(requirePermission('keys:read')).toEqualTypeOf<
  (principal: SaikuPrincipal | null | undefined, res: ServerResponse) => boolean
>()
expectTypeOf(saikuErrors()).toEqualTypeOf<(error: unknown, req: IncomingMessage, res: ServerResponse) => void>()

// withSaiku is a request listener that node:http takes as it is.
const listener = withSaiku(auth, async (_req, response, principal) => {
  expectTypeOf(principal).toEqualTypeOf<SaikuPrincipal | null>()
  response.end(principal?.tenant.tenantSlug)
})
expectTypeOf(listener).toEqualTypeOf<RequestListener>()
createServer(listener)

// The address hook reads the request synchronously.
saikuAuth(new MemoryKeyStore(), { clientAddress: (request) => request.socket.remoteAddress })
// @ts-expect-error: an async clientAddress is refused, the core reads the address at once
saikuAuth(new MemoryKeyStore(), { clientAddress: async () => '198.51.100.7' })
// @ts-expect-error: saikuErrors has no notFound: a server without a router has no unhandled route
saikuErrors({ notFound: false })
