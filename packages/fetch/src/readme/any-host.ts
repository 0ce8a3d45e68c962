import type { SaikuFetchAuth, SaikuPrincipal } from '@saiku/fetch'

type Handle = (request: Request, principal: SaikuPrincipal | null) => Promise<Response>

export async function answer(auth: SaikuFetchAuth, request: Request, clientAddress: string, handle: Handle) {
  const result = await auth(request, { clientAddress })
  if (!result.ok) return result.response // 401, 402, 429, 503…: return it as it is
  const response = await handle(request, result.principal)
  for (const [name, value] of Object.entries(result.headers)) response.headers.set(name, value)
  return response
}
