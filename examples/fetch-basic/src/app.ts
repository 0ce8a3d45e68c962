import { saikuAuth, SaikuHttpError, withSaiku, type KeyStore } from '@saiku/fetch'

/** The client's address from what the runtime passes beside the request: each entry names its own. */
export type ClientAddress<Info> = (request: Request, info: Info) => string | undefined

/**
 * One Fetch handler for every runtime (`Bun.serve`, `Deno.serve`, Node through a bridge): refused requests get
 * their JSON refusal, admitted ones the handler's answer with the `RateLimit` fields.
 */
export function createHandler<Info>(
  store: KeyStore,
  clientAddress: ClientAddress<Info>,
): (request: Request, info: Info) => Promise<Response> {
  const auth = saikuAuth(store, { subscription: { exemptPaths: ['/me/billing'] } })
  return withSaiku<Info>(
    auth,
    (request, principal) => {
      const { pathname } = new URL(request.url)
      if (request.method === 'GET' && pathname === '/me/tenant') return Response.json(principal!.tenant)
      throw new SaikuHttpError('not_found') // answered as the JSON 404, with the request's RateLimit fields
    },
    { clientAddress },
  )
}
