import { createPublicKey, type JsonWebKey } from 'node:crypto'
import type { JWTPayload, JWTVerifyGetKey } from 'jose'
import {
  redactUrl,
  SaikuConfigError,
  SaikuCredentialExpiredError,
  SaikuInputError,
  SaikuPermissionError,
  SaikuStoreError,
} from './errors.js'
import { grants } from './permissions.js'
import { MAX_TOKEN_LENGTH } from './bearer.js'
import { isPermission, MAX_PERMISSIONS, permissionsProblem, uniquePermissions } from './store.js'
import { isKeyId, KEY_ENVIRONMENTS, type KeyEnvironment } from './keys.js'
import type { KeyState, VerifiedCredential, VerifyResult, KeyVerifier } from './verifier.js'

// jose is ESM only: the one jose type in the public declarations is an import type that names its
// resolution mode, which a CommonJS consumer compiled with `module: node16` accepts (an import declaration
// there is TS1479, and import attributes are TS2823).
// eslint-disable-next-line @typescript-eslint/no-unsafe-assignment -- the linter reads the attributes as an object literal
type JWK = import('jose', { with: { 'resolution-mode': 'import' } }).JWK

// jose is ESM only: loaded on first use, so the CommonJS build of this package works on every Node 20.
type Jose = typeof import('jose')
let joseModule: Promise<Jose> | undefined
const loadJose = (): Promise<Jose> => (joseModule ??= import('jose'))

export type JwtAlgorithm =
  | 'RS256'
  | 'RS384'
  | 'RS512'
  | 'PS256'
  | 'PS384'
  | 'PS512'
  | 'ES256'
  | 'ES384'
  | 'ES512'
  | 'EdDSA'
  | 'Ed25519'
  | 'HS256'
  | 'HS384'
  | 'HS512'
const ASYMMETRIC: readonly string[] = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
]
const SYMMETRIC: readonly string[] = ['HS256', 'HS384', 'HS512']

/** The claims of a verified token, as the mapping function sees them. */
export type JwtClaims = Readonly<Record<string, unknown>>

/** Who a token speaks for; null refuses it (401). */
export type JwtCredentialMapper = (claims: JwtClaims) => {
  readonly tenantId: string
  readonly permissions: readonly string[]
  readonly label?: string
  readonly environment?: KeyEnvironment
  /** The API key the token was exchanged from: the token works only while that key does. */
  readonly sourceKeyId?: string
} | null

export interface JwtVerifierOptions {
  /** A JWKS endpoint: fetched on demand, cached, re-fetched when a token names an unknown `kid`. */
  readonly jwksUrl?: string | URL
  /** Or one local verification key: a public JWK (or, for HS*, a shared secret). */
  readonly key?: JWK | Uint8Array
  /** Accepted `iss` values. Required. */
  readonly issuer: string | readonly string[]
  /** Accepted `aud` values. Required. */
  readonly audience: string | readonly string[]
  /** The only algorithms accepted. Required; never `none`, and no HS* with a JWKS. */
  readonly algorithms: readonly JwtAlgorithm[]
  /** Leeway for `exp` and `nbf`. Default 5. */
  readonly clockToleranceSeconds?: number
  /** Claim that holds the tenant ID. Default `tenant_id`. */
  readonly tenantClaim?: string
  /** Claim that holds the permissions: a space-separated string (`scope`) or an array. Default `scope`. */
  readonly permissionsClaim?: string
  /** Replaces the claim mapping entirely. */
  readonly toCredential?: JwtCredentialMapper
  /** Bound on one JWKS fetch. Default 2000. */
  readonly jwksTimeoutMs?: number
  /** Least time between two fetches for an unknown `kid`. Default 30000. */
  readonly jwksCooldownMs?: number
  /** How long fetched keys are used before a refresh. Default 600000. */
  readonly jwksCacheMaxAgeMs?: number
}

const JWKS_UNREACHABLE = new Set(['ERR_JWKS_TIMEOUT', 'ERR_JWKS_INVALID', 'ERR_JOSE_GENERIC'])

function stringList(path: string, value: unknown): string[] {
  const list = typeof value === 'string' ? [value] : value
  if (!Array.isArray(list) || list.length === 0 || !list.every((item) => typeof item === 'string' && item.length > 0)) {
    throw new SaikuConfigError(path, 'a non-empty string or array of strings', value)
  }
  return [...(list as string[])]
}

function permissionsFrom(value: unknown): string[] | null {
  if (value === undefined) return []
  if (typeof value === 'string') return value.split(' ').filter((scope) => scope.length > 0)
  if (Array.isArray(value) && value.every((item) => typeof item === 'string')) return [...value]
  return null
}

const ALGORITHMS_BY_KEY: Readonly<Record<string, readonly string[]>> = {
  RSA: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'],
  'EC:P-256': ['ES256'],
  'EC:P-384': ['ES384'],
  'EC:P-521': ['ES512'],
  'OKP:Ed25519': ['EdDSA', 'Ed25519'],
}

/**
 * Checks a local key against the algorithms now, so a key that cannot verify
 * them is a start-up error, not a 503 on every request: a secret (bytes) only
 * with HS*, a public JWK only with the algorithms of its type, never a private one.
 */
function checkLocalKey(key: JWK | Uint8Array, algorithms: readonly string[]): JWK | Uint8Array {
  if (key instanceof Uint8Array) {
    if (key.length < 32)
      throw new SaikuConfigError('jwt.key', 'a shared secret of at least 32 bytes', `${key.length} bytes`)
    const asymmetric = algorithms.filter((algorithm) => !SYMMETRIC.includes(algorithm))
    if (asymmetric.length > 0)
      throw new SaikuConfigError('jwt.algorithms', 'only HS* with a shared secret', asymmetric[0])
    return key
  }
  if (typeof key !== 'object' || key === null || typeof key.kty !== 'string')
    throw new SaikuConfigError('jwt.key', 'a public JWK or a shared secret (bytes)', key, { secret: true })
  if (key.d !== undefined) throw new SaikuConfigError('jwt.key', 'the public half of the key (no "d")', 'a private JWK')
  try {
    createPublicKey({ key: key as JsonWebKey, format: 'jwk' })
  } catch (error) {
    throw new SaikuConfigError('jwt.key', 'a valid public JWK', (error as Error).message)
  }
  const allowed = ALGORITHMS_BY_KEY[key.kty === 'RSA' ? 'RSA' : `${key.kty}:${String(key.crv)}`] ?? []
  for (const algorithm of algorithms) {
    if (!allowed.includes(algorithm)) {
      throw new SaikuConfigError(
        'jwt.algorithms',
        `algorithms this ${key.kty} key can verify (${allowed.join(', ') || 'none'})`,
        algorithm,
      )
    }
  }
  return key
}

/**
 * Verifies signed bearer tokens (JWT) with jose: signature against a JWKS or a
 * local key, `iss`, `aud`, `exp`/`nbf` with a tolerance, an explicit list of
 * algorithms; then maps the claims to a tenant and permissions. An unreachable
 * JWKS is a store failure (503 or the policy), never a 401.
 */
export function createJwtVerifier(options: JwtVerifierOptions): KeyVerifier {
  if ((options.jwksUrl === undefined) === (options.key === undefined)) {
    throw new SaikuConfigError(
      'jwt',
      'exactly one of jwksUrl or key',
      options.jwksUrl === undefined ? 'neither' : 'both',
    )
  }
  const algorithms = stringList('jwt.algorithms', options.algorithms)
  for (const algorithm of algorithms) {
    if (!ASYMMETRIC.includes(algorithm) && !SYMMETRIC.includes(algorithm)) {
      throw new SaikuConfigError(
        'jwt.algorithms',
        `signing algorithms (${[...ASYMMETRIC, ...SYMMETRIC].join(', ')}); never "none"`,
        algorithm,
      )
    }
    // A JWKS publishes public keys: accepting HS* would let a public key serve as an HMAC secret.
    if (SYMMETRIC.includes(algorithm) && options.jwksUrl !== undefined) {
      throw new SaikuConfigError('jwt.algorithms', 'only asymmetric algorithms with a JWKS', algorithm)
    }
  }
  const issuer = stringList('jwt.issuer', options.issuer)
  const audience = stringList('jwt.audience', options.audience)
  const clockTolerance = options.clockToleranceSeconds ?? 5
  if (!Number.isFinite(clockTolerance) || clockTolerance < 0)
    throw new SaikuConfigError('jwt.clockToleranceSeconds', 'a non-negative number', clockTolerance)
  const tenantClaim = options.tenantClaim ?? 'tenant_id'
  const permissionsClaim = options.permissionsClaim ?? 'scope'
  let jwksUrl: URL | undefined
  if (options.jwksUrl !== undefined) {
    try {
      jwksUrl = new URL(options.jwksUrl)
    } catch {
      throw new SaikuConfigError('jwt.jwksUrl', 'an absolute URL', options.jwksUrl, { secret: true })
    }
    if (jwksUrl.username !== '' || jwksUrl.password !== '') {
      throw new SaikuConfigError(
        'jwt.jwksUrl',
        'a URL without a user name or password (a JWKS is public)',
        redactUrl(jwksUrl),
      )
    }
  }
  if (
    jwksUrl !== undefined &&
    jwksUrl.protocol !== 'https:' &&
    jwksUrl.hostname !== '127.0.0.1' &&
    jwksUrl.hostname !== 'localhost' &&
    jwksUrl.hostname !== '[::1]'
  ) {
    throw new SaikuConfigError(
      'jwt.jwksUrl',
      'an https URL (plain http only on loopback)',
      `${jwksUrl.origin}${jwksUrl.pathname}`,
    )
  }

  const mapClaims: JwtCredentialMapper =
    options.toCredential ??
    ((claims) => {
      const tenantId = claims[tenantClaim]
      const permissions = permissionsFrom(claims[permissionsClaim])
      if (typeof tenantId !== 'string' || tenantId.length === 0 || permissions === null) return null
      // The claims createTokenIssuer writes: the source key's ID and its environment.
      const sourceKeyId = claims.key_id
      const environment = claims.environment
      if (sourceKeyId !== undefined && (typeof sourceKeyId !== 'string' || !isKeyId(sourceKeyId))) return null
      if (environment !== undefined && !KEY_ENVIRONMENTS.includes(environment as KeyEnvironment)) return null
      return {
        tenantId,
        permissions,
        label: typeof claims.sub === 'string' ? claims.sub : 'jwt',
        ...(environment === undefined ? {} : { environment: environment as KeyEnvironment }),
        ...(sourceKeyId === undefined ? {} : { sourceKeyId }),
      }
    })

  const localKey = options.key === undefined ? undefined : checkLocalKey(options.key, algorithms)
  // One imported key per algorithm: jose binds a key to the algorithm it was imported for.
  const imported = new Map<string, Promise<Awaited<ReturnType<Jose['importJWK']>>>>()
  let remote: JWTVerifyGetKey | undefined
  const keySource = (jose: Jose): JWTVerifyGetKey | Uint8Array => {
    if (jwksUrl !== undefined) {
      if (remote === undefined) {
        const set = jose.createRemoteJWKSet(jwksUrl, {
          timeoutDuration: options.jwksTimeoutMs ?? 2_000,
          cooldownDuration: options.jwksCooldownMs ?? 30_000,
          cacheMaxAge: options.jwksCacheMaxAgeMs ?? 600_000,
        })
        // A JWKS key is chosen by its kid: a token without one names no key.
        remote = async (header, token) => {
          if (typeof header.kid !== 'string') throw new jose.errors.JWKSNoMatchingKey()
          return set(header, token)
        }
      }
      return remote
    }
    if (localKey instanceof Uint8Array) return localKey
    return async (header) => {
      // A local key with a kid verifies only tokens that name it.
      if (localKey!.kid !== undefined && header.kid !== localKey!.kid) throw new jose.errors.JWKSNoMatchingKey()
      const alg = header.alg ?? ''
      let key = imported.get(alg)
      if (key === undefined) imported.set(alg, (key = jose.importJWK(localKey!, alg)))
      return key
    }
  }

  const failure = (reason: 'expired' | 'unknown_key' | 'invalid_jwt'): VerifyResult => ({ ok: false, reason })

  return {
    async verify(token) {
      const jose = await loadJose()
      const key = keySource(jose)
      let payload: JWTPayload
      try {
        // Every token must expire: one without `exp` would be good forever.
        const verified = await jose.jwtVerify(token, key as JWTVerifyGetKey, {
          issuer,
          audience,
          algorithms,
          clockTolerance,
          requiredClaims: ['exp'],
        })
        payload = verified.payload
      } catch (error) {
        const code = (error as { code?: unknown }).code
        if (code === 'ERR_JWT_EXPIRED') return failure('expired')
        if (code === 'ERR_JWKS_NO_MATCHING_KEY' || code === 'ERR_JWKS_MULTIPLE_MATCHING_KEYS')
          return failure('unknown_key')
        if (jwksUrl !== undefined && (JWKS_UNREACHABLE.has(String(code)) || error instanceof TypeError)) {
          throw new SaikuStoreError('key_store', 'the JWKS endpoint could not be read', { cause: error })
        }
        return failure('invalid_jwt')
      }
      const mapped = mapClaims(payload)
      // Permissions follow the one grammar here too: a claim that smuggles "*" or a space is refused.
      if (mapped === null || !Array.isArray(mapped.permissions) || !mapped.permissions.every(isPermission))
        return failure('invalid_jwt')
      const credential: VerifiedCredential = {
        type: 'jwt',
        keyId:
          typeof payload.jti === 'string'
            ? payload.jti
            : `jwt:${typeof payload.sub === 'string' ? payload.sub : 'anonymous'}`,
        tenantId: mapped.tenantId,
        label: mapped.label ?? 'jwt',
        environment: mapped.environment ?? 'live',
        permissions: Object.freeze(uniquePermissions(mapped.permissions)),
        expiresAt: new Date((payload.exp as number) * 1000),
        ...(mapped.sourceKeyId === undefined ? {} : { sourceKeyId: mapped.sourceKeyId }),
      }
      return { ok: true, credential }
    },
  }
}

export interface CompositeVerifierOptions {
  readonly apiKeys: KeyVerifier
  readonly others: KeyVerifier
  /** The environments accepted, for tokens as for keys. Default both. */
  readonly environments?: readonly KeyEnvironment[]
  /**
   * The state of the API key a token was exchanged from (`sourceKeyId`). Without
   * it, a token that names a source key is refused: it could not be checked.
   */
  readonly sourceKeys?: (keyId: string) => KeyState | Promise<KeyState>
}

const NOT_ACCEPTED: VerifyResult = Object.freeze({ ok: false, reason: 'environment_not_accepted' })
const INVALID_JWT: VerifyResult = Object.freeze({ ok: false, reason: 'invalid_jwt' })

/**
 * Sends API keys (`sk_live_…`, `sk_test_…`) to one verifier and every other token
 * to another. A token exchanged from a key works only while that key does: same
 * tenant, same environment, not revoked, not expired.
 */
export function createCompositeVerifier(verifiers: CompositeVerifierOptions): KeyVerifier {
  const isApiKey = (token: string): boolean => token.startsWith('sk_live_') || token.startsWith('sk_test_')
  const environments = verifiers.environments ?? KEY_ENVIRONMENTS
  const { sourceKeys } = verifiers

  function withSource(credential: VerifiedCredential, state: KeyState): VerifyResult {
    if (!state.ok) return { ok: false, reason: state.reason }
    if (state.tenantId !== credential.tenantId) return INVALID_JWT
    if (!environments.includes(state.environment)) return NOT_ACCEPTED
    // The token is bound to its key's address restriction as it stands now, whatever the token says.
    const { allowlist: _claimed, ...unrestricted } = credential
    const bound =
      credential.environment === state.environment && credential.allowlist === state.allowlist
        ? credential
        : {
            ...unrestricted,
            environment: state.environment,
            ...(state.allowlist === undefined ? {} : { allowlist: state.allowlist }),
          }
    return { ok: true, credential: bound }
  }

  function checked(result: VerifyResult): VerifyResult | Promise<VerifyResult> {
    if (!result.ok) return result
    const { credential } = result
    if (credential.sourceKeyId === undefined)
      return environments.includes(credential.environment) ? result : NOT_ACCEPTED
    if (sourceKeys === undefined) return INVALID_JWT
    const state = sourceKeys(credential.sourceKeyId)
    return state instanceof Promise
      ? state.then((settled) => withSource(credential, settled))
      : withSource(credential, state)
  }

  return {
    verify(token) {
      if (isApiKey(token)) return verifiers.apiKeys.verify(token)
      const result = verifiers.others.verify(token)
      return result instanceof Promise ? result.then(checked) : checked(result)
    },
    verifyWithoutIo: (token, nowMs) =>
      isApiKey(token) ? verifiers.apiKeys.verifyWithoutIo?.(token, nowMs) : undefined,
    invalidateKey: (keyId) => verifiers.apiKeys.invalidateKey?.(keyId),
    storeCallOf: (keyId) => verifiers.apiKeys.storeCallOf?.(keyId),
  }
}

export interface TokenIssuerOptions {
  /** The private signing key, as a JWK with its `kid`. */
  readonly privateKey: JWK
  readonly issuer: string
  readonly audience: string
  /** Default: the JWK's `alg`, else ES256. */
  readonly algorithm?: JwtAlgorithm
  /** Default 900 (15 minutes); at most 86400. */
  readonly ttlSeconds?: number
}

export interface IssuedToken {
  readonly accessToken: string
  readonly tokenType: 'Bearer'
  readonly expiresIn: number
  readonly permissions: readonly string[]
}

export interface TokenIssuer {
  /**
   * Trades a verified credential for a short-lived JWT; `permissions` may only narrow it.
   * Rejects with a SaikuInputError (bad `permissions` or `ttlSeconds`), a SaikuPermissionError
   * (more than the credential holds, or a credential that cannot be exchanged) or a
   * SaikuCredentialExpiredError; the error handlers answer them with a 400, 403 and 401.
   */
  issue(
    credential: VerifiedCredential,
    request?: { readonly permissions?: readonly string[]; readonly ttlSeconds?: number },
  ): Promise<IssuedToken>
  /** The public half of the signing key, for `/.well-known/jwks.json`. */
  jwks(): { readonly keys: readonly JWK[] }
}

/** Token exchange: an API key in, a short-lived JWT out, signed by the server's own key. */
export function createTokenIssuer(options: TokenIssuerOptions): TokenIssuer {
  const { privateKey } = options
  if (
    typeof privateKey !== 'object' ||
    privateKey === null ||
    typeof privateKey.kid !== 'string' ||
    privateKey.d === undefined
  ) {
    throw new SaikuConfigError('tokens.privateKey', 'a private JWK with a kid', privateKey, { secret: true })
  }
  const algorithm = options.algorithm ?? (privateKey.alg as JwtAlgorithm | undefined) ?? 'ES256'
  if (!ASYMMETRIC.includes(algorithm))
    throw new SaikuConfigError('tokens.algorithm', 'an asymmetric algorithm', algorithm)
  const maxTtl = options.ttlSeconds ?? 900
  if (!Number.isInteger(maxTtl) || maxTtl < 1 || maxTtl > 86_400)
    throw new SaikuConfigError('tokens.ttlSeconds', 'an integer from 1 to 86400', maxTtl)
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicKey } = privateKey
  const publicJwk = Object.freeze({ ...publicKey, alg: algorithm, use: 'sig' })
  let signingKey: ReturnType<Jose['importJWK']> | undefined

  return {
    jwks: () => ({ keys: [publicJwk] }),
    async issue(credential, request = {}) {
      const granted = credential.permissions
      // Each permission is one token of the grammar: a space would split into others when the scope is read back.
      const problem = permissionsProblem(request.permissions ?? [])
      if (problem !== null) throw new SaikuInputError('permissions', `${problem}.`)
      const wanted = uniquePermissions(request.permissions ?? granted)
      if (wanted.length > MAX_PERMISSIONS || !wanted.every(isPermission)) {
        throw new SaikuInputError(
          'permissions',
          `A token carries at most ${MAX_PERMISSIONS} permissions of the form "keys:read"; ask for fewer.`,
        )
      }
      const beyond = wanted.filter((permission) => !grants(granted, permission))
      if (beyond.length > 0)
        throw new SaikuPermissionError(`A token cannot carry what the key does not hold: ${beyond.join(', ')}.`, beyond)
      const asked = request.ttlSeconds ?? maxTtl
      if (!Number.isInteger(asked) || asked < 1 || asked > maxTtl)
        throw new SaikuInputError('ttlSeconds', `ttlSeconds must be an integer from 1 to ${maxTtl}.`)
      // Never outlives the credential it was exchanged from.
      const leftSeconds =
        credential.expiresAt === null ? Infinity : Math.floor((credential.expiresAt.getTime() - Date.now()) / 1000)
      if (leftSeconds < 1) throw new SaikuCredentialExpiredError()
      const ttl = Math.min(asked, leftSeconds)
      // The key the token works through: its revocation or expiry ends the token too.
      const sourceKeyId = credential.type === 'api_key' ? credential.keyId : credential.sourceKeyId
      if (sourceKeyId === undefined)
        throw new SaikuPermissionError('Only an API key, or a token exchanged from one, can be exchanged for a token.')
      const jose = await loadJose()
      signingKey ??= jose.importJWK(privateKey, algorithm)
      const claims = {
        tenant_id: credential.tenantId,
        scope: wanted.join(' '),
        key_id: sourceKeyId,
        environment: credential.environment,
      }
      const accessToken = await new jose.SignJWT(claims)
        .setProtectedHeader({ alg: algorithm, kid: privateKey.kid!, typ: 'at+jwt' })
        .setIssuer(options.issuer)
        .setAudience(options.audience)
        .setSubject(credential.label)
        .setJti(crypto.randomUUID())
        .setIssuedAt()
        .setExpirationTime(`${ttl}s`)
        .sign(await signingKey)
      // Never hand out a token that the bearer parser would refuse.
      if (accessToken.length > MAX_TOKEN_LENGTH)
        throw new SaikuInputError('permissions', 'The token would be too large to send; ask for fewer permissions.')
      return { accessToken, tokenType: 'Bearer', expiresIn: ttl, permissions: [...wanted] }
    },
  }
}
