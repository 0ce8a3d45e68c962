// @saiku/core/jwt: signed bearer tokens beside API keys (the `jwt` option), and issuing them.

export { createJwtVerifier, createTokenIssuer } from '../jwt.js'
export type {
  IssuedToken,
  JwtAlgorithm,
  JwtClaims,
  JwtCredentialMapper,
  JwtVerifierOptions,
  TokenIssuer,
  TokenIssuerOptions,
} from '../jwt.js'
