import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose'

/** A signing key of a test's own, the `jwt` options that accept its tokens, and a way to sign them. */
export interface TestSigner {
  readonly jwtOptions: {
    readonly jwt: {
      readonly key: JWK
      readonly issuer: string
      readonly audience: string
      readonly algorithms: ['ES256']
    }
  }
  /** An ES256 token for `tenantId` with scope `keys:read`, issued at `issuedAtMs`; `claims` add or replace. */
  token(claims: Record<string, unknown>, expiresAtMs: number): Promise<string>
}

export async function createTestSigner(tenantId: string, issuedAtMs: number): Promise<TestSigner> {
  const pair = await generateKeyPair('ES256', { extractable: true })
  const jwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: 'k1' }
  return {
    jwtOptions: { jwt: { key: jwk, issuer: 'https://id.test', audience: 'saiku', algorithms: ['ES256'] } },
    token: (claims, expiresAtMs) =>
      new SignJWT({ tenant_id: tenantId, scope: 'keys:read', ...claims })
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .setIssuer('https://id.test')
        .setAudience('saiku')
        .setIssuedAt(Math.floor(issuedAtMs / 1000))
        .setExpirationTime(Math.floor(expiresAtMs / 1000))
        .sign(pair.privateKey),
  }
}
