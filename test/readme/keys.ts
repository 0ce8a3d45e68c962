import type { CreatedApiKey, SaikuMiddleware } from '@saiku/express'

/** The spec's rotation through the middleware's key manager: mint, list, then a successor and the old key revoked. */
export async function mintAndRotate(auth: SaikuMiddleware, tenantId: string): Promise<CreatedApiKey | null> {
  const { key, keyId } = await auth.authenticator.keys.create(tenantId, { label: 'production-agent', permissions: ['keys:read'] })
  console.log(`Your key, shown once: ${key}`) // the store received only its digest
  await auth.authenticator.keys.list(tenantId) // [{ keyId, label, environment, permissions, createdAt, expiresAt, lastUsedAt }]
  const successor = await auth.authenticator.keys.rotate(tenantId, keyId) // same label, permissions and expiry; both work
  await auth.authenticator.keys.revoke(tenantId, keyId) // false for unknown keys and other tenants' keys: answer 404
  return successor
}
