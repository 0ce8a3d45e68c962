import { saikuAuth, type KeyStore, type SaikuMiddleware } from '@saiku/express'

/** API keys, and access tokens from your identity provider: one pipeline, the same tenants, limits and errors. */
export function keysAndTokens(store: KeyStore, jwksUrl: string): SaikuMiddleware {
  return saikuAuth(store, {
    jwt: {
      jwksUrl, // such as 'https://id.example.com/.well-known/jwks.json'; or key: a public JWK
      issuer: 'https://id.example.com',
      audience: 'saiku-api',
      algorithms: ['RS256', 'ES256'], // required; never "none", and no HS* with a JWKS
      // tenantClaim: 'tenant_id', permissionsClaim: 'scope', toCredential: (claims) => ({ tenantId, permissions })
    },
  })
}
