import type { RotatedApiKey, SaikuMiddleware } from '@saiku/express'

/** A key for the office network only, edited later, then rotated with a day's grace. */
export async function officeKey(auth: SaikuMiddleware, tenantId: string): Promise<RotatedApiKey | null> {
  const { keyId } = await auth.authenticator.keys.create(tenantId, {
    label: 'office-agent',
    allowedAddresses: ['203.0.113.0/24', '2001:db8:abcd::/48'], // elsewhere: 403, nothing counted
  })
  await auth.authenticator.keys.update(tenantId, keyId, { allowedAddresses: ['203.0.113.0/24'] }) // every process, at once
  return auth.authenticator.keys.rotate(tenantId, keyId, { graceSeconds: 86_400 }) // the old key ends in 24 hours
}
