import type { RequestListener, ServerResponse } from 'node:http'
import { requirePermission, saikuAuth, SaikuHttpError, withSaiku, type KeyStore } from '@saiku/node'

function sendJson(res: ServerResponse, body: unknown): void {
  res.setHeader('content-type', 'application/json; charset=utf-8')
  res.end(JSON.stringify(body))
}

export function createApp(store: KeyStore): RequestListener {
  const auth = saikuAuth(store, { subscription: { exemptPaths: ['/me/billing'] } })
  const canListKeys = requirePermission('keys:read')

  // Every request is authenticated first: a refusal is answered before the handler runs, and what
  // the handler throws is answered as JSON, never a stack trace.
  return withSaiku(auth, async (req, res, principal) => {
    const path = req.url!.split('?', 1)[0] // as sent, without the query, matched exactly
    if (req.method === 'GET' && path === '/me/tenant') {
      return sendJson(res, principal!.tenant) // { tenantId, tenantSlug, tier, connectionName }
    }
    if (req.method === 'GET' && path === '/me/api-keys') {
      if (!canListKeys(principal, res)) return // the 403 is written
      return sendJson(res, { keys: await auth.authenticator.keys.list(principal!.tenant.tenantId) })
    }
    throw new SaikuHttpError('not_found')
  })
}
