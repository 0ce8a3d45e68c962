import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { exportJWK, generateKeyPair, type JWK } from 'jose'
import { createTokenIssuer, type JwtVerifierOptions, type TokenIssuer } from '@saiku/core/jwt'
import { ConfigError, DEFAULT_DATA_DIR } from './config.js'

export interface TokenSetup {
  readonly issuer: TokenIssuer
  /** What saikuAuth needs to accept the tokens this server issues. */
  readonly verifier: JwtVerifierOptions
}

const TOKEN_ISSUER = 'saiku-cloud-api'

/**
 * The server's signing key: JWT_PRIVATE_JWK (a private JWK with a kid) when set,
 * else one generated once into the data folder, readable by this user only.
 * Every process that verifies the tokens needs the same key.
 */
async function signingKey(env: NodeJS.ProcessEnv): Promise<JWK> {
  if (env.JWT_PRIVATE_JWK !== undefined && env.JWT_PRIVATE_JWK !== '') {
    try {
      return JSON.parse(env.JWT_PRIVATE_JWK) as JWK
    } catch {
      throw new ConfigError('JWT_PRIVATE_JWK: expected a private JWK in JSON')
    }
  }
  const file = join(env.SAIKU_DATA_DIR || DEFAULT_DATA_DIR, 'jwt-signing-key.json')
  if (!existsSync(file)) {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true })
    const jwk = { ...(await exportJWK(privateKey)), kid: `saiku-${Date.now().toString(36)}`, alg: 'ES256' }
    mkdirSync(dirname(file), { recursive: true })
    // wx: if another process created it first, keep theirs.
    try {
      writeFileSync(file, JSON.stringify(jwk), { mode: 0o600, flag: 'wx' })
    } catch (error) {
      if ((error as { code?: string }).code !== 'EEXIST') throw error
    }
    chmodSync(file, 0o600)
  }
  return JSON.parse(readFileSync(file, 'utf8')) as JWK
}

export async function createTokens(env: NodeJS.ProcessEnv = process.env): Promise<TokenSetup> {
  const privateKey = await signingKey(env)
  const issuer = createTokenIssuer({ privateKey, issuer: TOKEN_ISSUER, audience: TOKEN_ISSUER, ttlSeconds: 900 })
  return {
    issuer,
    verifier: { key: issuer.jwks().keys[0]!, issuer: TOKEN_ISSUER, audience: TOKEN_ISSUER, algorithms: ['ES256'] },
  }
}
