import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http'
import { saikuAuth, saikuErrors, type KeyStore } from '@saiku/node'

export function createListener(store: KeyStore): RequestListener {
  const auth = saikuAuth(store)
  const answerError = saikuErrors() // a thrown error as JSON: a 500 that reveals nothing, logged

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const principal = await auth(req, res)
    if (principal === undefined) return // refused: the JSON 401, 402, 429 or 503 is written
    res.setHeader('content-type', 'application/json; charset=utf-8')
    res.end(JSON.stringify(principal?.tenant)) // RateLimit and RateLimit-Policy are set already
  }

  return (req, res) => void handle(req, res).catch((error: unknown) => answerError(error, req, res))
}
