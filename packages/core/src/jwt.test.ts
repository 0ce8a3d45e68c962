import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWK } from 'jose'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { createJwtVerifier, createTokenIssuer } from './jwt.js'
import { createAuthenticator } from './authenticator.js'
import type { AdmittedDecision } from './decision.js'
import { MemoryKeyStore } from './store.js'

const ISSUER = 'https://id.example.test'
const AUDIENCE = 'saiku-api'
const tenant = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'w',
  subscription: { status: 'active' as const },
}
const request = (token: string) => ({ headers: { authorization: `Bearer ${token}` }, method: 'GET', url: '/me/tenant' })

type Pair = Awaited<ReturnType<typeof generateKeyPair>>
interface SigningKey {
  readonly alg: 'RS256' | 'ES256' | 'EdDSA'
  readonly kid: string
  readonly pair: Pair
  readonly jwk: JWK
}

async function signingKey(alg: SigningKey['alg'], kid: string): Promise<SigningKey> {
  const pair = await generateKeyPair(alg, { extractable: true })
  return { alg, kid, pair, jwk: { ...(await exportJWK(pair.publicKey)), kid, alg } }
}

function sign(
  key: SigningKey,
  claims: Record<string, unknown> = {},
  tweak: (jwt: SignJWT) => SignJWT = (jwt) => jwt,
): Promise<string> {
  const jwt = new SignJWT({ tenant_id: 't-acme', scope: 'keys:read reports:read', ...claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setSubject('dashboard-user-7')
    .setIssuedAt()
    .setExpirationTime('5m')
  return tweak(jwt).sign(key.pair.privateKey)
}

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

describe('createJwtVerifier', () => {
  let keys: SigningKey[]
  let served: JWK[]
  let jwksStatus = 200
  let server: Server
  let jwksUrl: string

  beforeAll(async () => {
    keys = [await signingKey('RS256', 'rsa-1'), await signingKey('ES256', 'ec-1'), await signingKey('EdDSA', 'ed-1')]
    served = keys.map((key) => key.jwk)
    server = createServer((_req, res) => {
      res.writeHead(jwksStatus, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ keys: served }))
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`
  })
  afterAll(() => server.close())

  const authenticator = (jwt: Parameters<typeof createJwtVerifier>[0] | undefined = undefined) => {
    const store = new MemoryKeyStore({ tenants: [tenant] })
    return createAuthenticator(store, {
      jwt: jwt ?? {
        jwksUrl,
        issuer: ISSUER,
        audience: AUDIENCE,
        algorithms: ['RS256', 'ES256', 'EdDSA'],
        jwksCooldownMs: 0,
      },
    })
  }

  it.each(['RS256', 'ES256', 'EdDSA'] as const)(
    'verifies %s tokens against the JWKS and maps claims to the tenant',
    async (alg) => {
      const auth = authenticator()
      const decision = await auth.authenticate(request(await sign(keys.find((k) => k.alg === alg)!)))
      expect(decision).toMatchObject({
        ok: true,
        principal: {
          tenant: { tenantId: 't-acme' },
          credential: { type: 'jwt', label: 'dashboard-user-7', permissions: ['keys:read', 'reports:read'] },
        },
      })
    },
  )

  it('shares the tenant budget with API keys', async () => {
    const auth = authenticator()
    const { key } = await auth.keys.create('t-acme', { label: 'agent' })
    await auth.authenticate(request(key))
    const viaJwt = (await auth.authenticate(request(await sign(keys[0]!)))) as AdmittedDecision
    expect(viaJwt.principal.rateLimit?.minute.remaining).toBe(58)
  })

  it('answers a token for a tenant that does not exist with the 401 of every failing token, not the API-key one', async () => {
    const events: string[] = []
    const store = new MemoryKeyStore({ tenants: [tenant] })
    const auth = createAuthenticator(store, {
      jwt: { jwksUrl, issuer: ISSUER, audience: AUDIENCE, algorithms: ['RS256'], jwksCooldownMs: 0 },
      onDecision: (event) => events.push(`${event.status} ${event.reason}`),
    })
    const decision = await auth.authenticate(request(await sign(keys[0]!, { tenant_id: 't-nobody' })))
    expect(decision).toMatchObject({ ok: false, status: 401, code: 'unauthorized' })
    if (!decision.ok) {
      expect(JSON.parse(decision.body)).toEqual({
        error: 'unauthorized',
        message: 'Access token invalid, expired or revoked.',
      })
      expect(decision.headers['www-authenticate']).toContain('error="invalid_token"')
    }
    // An API key whose tenant is gone keeps the API-key wording.
    const { key } = await auth.keys.create('t-acme', { label: 'agent' })
    vi.spyOn(store, 'findTenant').mockResolvedValue(null)
    auth.invalidateTenant('t-acme')
    const orphan = await auth.authenticate(request(key))
    if (!orphan.ok) expect(JSON.parse(orphan.body).message).toBe('API key missing or invalid.')
    expect(orphan.ok).toBe(false)
    expect(events).toEqual(['401 unknown_tenant', '401 unknown_tenant'])
  })

  it('takes a key added to the JWKS (rotation) without a restart', async () => {
    const auth = authenticator()
    expect((await auth.authenticate(request(await sign(keys[1]!)))).ok).toBe(true)
    const rotated = await signingKey('ES256', 'ec-2')
    served = [...served, rotated.jwk]
    expect((await auth.authenticate(request(await sign(rotated)))).ok).toBe(true)
  })

  it.each([
    [
      'an expired token',
      () => sign(keys[0]!, {}, (jwt) => jwt.setExpirationTime(Math.floor(Date.now() / 1000) - 60)),
      'expired',
    ],
    [
      'a token not yet valid',
      () => sign(keys[0]!, {}, (jwt) => jwt.setNotBefore(Math.floor(Date.now() / 1000) + 600)),
      'invalid_jwt',
    ],
    ['a wrong audience', () => sign(keys[0]!, {}, (jwt) => jwt.setAudience('someone-else')), 'invalid_jwt'],
    ['a wrong issuer', () => sign(keys[0]!, {}, (jwt) => jwt.setIssuer('https://evil.test')), 'invalid_jwt'],
    ['no tenant claim', () => sign(keys[0]!, { tenant_id: undefined }), 'invalid_jwt'],
    ['a bad signature', async () => (await sign(keys[0]!)).replace(/.{4}$/, 'AAAA'), 'invalid_jwt'],
    ['an unknown kid', async () => sign({ ...(await signingKey('ES256', 'nobody-knows')) }), 'unknown_key'],
    [
      'alg "none"',
      async () =>
        `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ tenant_id: 't-acme', iss: ISSUER, aud: AUDIENCE, exp: 9_999_999_999 })}.`,
      'invalid_jwt',
    ],
  ])('refuses %s with 401 invalid_token', async (_name, make, reason) => {
    const reasons: string[] = []
    const store = new MemoryKeyStore({ tenants: [tenant] })
    const auth = createAuthenticator(store, {
      jwt: { jwksUrl, issuer: ISSUER, audience: AUDIENCE, algorithms: ['RS256', 'ES256', 'EdDSA'], jwksCooldownMs: 0 },
      onDecision: (event) => reasons.push(event.reason),
    })
    const decision = await auth.authenticate(request(await make()))
    expect(decision).toMatchObject({ ok: false, status: 401, code: 'unauthorized' })
    if (!decision.ok) expect(decision.headers['www-authenticate']).toContain('error="invalid_token"')
    expect(reasons).toEqual([reason])
  })

  it('refuses a token without exp, and accepts a long one (4096-bit RSA)', async () => {
    const forever = await new SignJWT({ tenant_id: 't-acme' })
      .setProtectedHeader({ alg: 'ES256', kid: 'ec-1' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .sign(keys[1]!.pair.privateKey)
    expect(await authenticator().authenticate(request(forever))).toMatchObject({ ok: false, status: 401 })

    const big = await generateKeyPair('RS256', { modulusLength: 4096, extractable: true })
    const bigKey: SigningKey = {
      alg: 'RS256',
      kid: 'rsa-4096',
      pair: big,
      jwk: { ...(await exportJWK(big.publicKey)), kid: 'rsa-4096', alg: 'RS256' },
    }
    served = [...served, bigKey.jwk]
    const long = await sign(bigKey, { scope: 'keys:read '.repeat(20).trim() })
    expect(long.length).toBeGreaterThan(1_024)
    expect((await authenticator().authenticate(request(long))).ok).toBe(true)
  })

  it('refuses an HS256 token signed with the RSA public key (algorithm confusion)', async () => {
    const pem = await exportSPKI(keys[0]!.pair.publicKey)
    const forged = await new SignJWT({ tenant_id: 't-acme' })
      .setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime('5m')
      .sign(new TextEncoder().encode(pem))
    expect(await authenticator().authenticate(request(forged))).toMatchObject({ ok: false, status: 401 })
  })

  it('answers 503, never 401, when the JWKS cannot be read', async () => {
    const token = await sign(keys[0]!)
    jwksStatus = 500
    try {
      expect(await authenticator().authenticate(request(token))).toMatchObject({
        ok: false,
        status: 503,
        code: 'service_unavailable',
      })
    } finally {
      jwksStatus = 200
    }
    const unreachable = createAuthenticator(new MemoryKeyStore({ tenants: [tenant] }), {
      jwt: { jwksUrl: 'http://127.0.0.1:1/jwks.json', issuer: ISSUER, audience: AUDIENCE, algorithms: ['RS256'] },
    })
    expect(await unreachable.authenticate(request(token))).toMatchObject({ ok: false, status: 503 })
  })

  it('maps claims through a function of the caller’s, which can refuse a token', async () => {
    const auth = authenticator({
      key: keys[1]!.jwk,
      issuer: ISSUER,
      audience: AUDIENCE,
      algorithms: ['ES256'],
      toCredential: (claims) =>
        claims.org === 'acme-org'
          ? { tenantId: 't-acme', permissions: ['keys:*'], label: `user ${String(claims.sub)}`, environment: 'test' }
          : null,
    })
    expect(
      await auth.authenticate(request(await sign(keys[1]!, { org: 'acme-org', tenant_id: undefined }))),
    ).toMatchObject({
      ok: true,
      principal: {
        credential: { type: 'jwt', permissions: ['keys:*'], label: 'user dashboard-user-7', environment: 'test' },
      },
    })
    expect(await auth.authenticate(request(await sign(keys[1]!, { org: 'other' })))).toMatchObject({
      ok: false,
      status: 401,
    })
  })

  it('refuses at construction a local key that cannot verify every listed algorithm', async () => {
    expect(() =>
      createJwtVerifier({ key: keys[0]!.jwk, issuer: ISSUER, audience: AUDIENCE, algorithms: ['RS256', 'HS256'] }),
    ).toThrow(
      'jwt.algorithms: expected algorithms this RSA key can verify (RS256, RS384, RS512, PS256, PS384, PS512), got "HS256"',
    )
    expect(() =>
      createJwtVerifier({ key: keys[1]!.jwk, issuer: ISSUER, audience: AUDIENCE, algorithms: ['RS256'] }),
    ).toThrow('jwt.algorithms')
    // One RSA key listed for two algorithms: a PS256 token verifies though RS256 comes first.
    const pss = await generateKeyPair('PS256', { extractable: true })
    const auth = authenticator({
      key: await exportJWK(pss.publicKey),
      issuer: ISSUER,
      audience: AUDIENCE,
      algorithms: ['RS256', 'PS256'],
    })
    const token = await new SignJWT({ tenant_id: 't-acme' })
      .setProtectedHeader({ alg: 'PS256' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime('5m')
      .sign(pss.privateKey)
    expect((await auth.authenticate(request(token))).ok).toBe(true)
  })

  it('verifies against one local key as well', async () => {
    const auth = authenticator({ key: keys[2]!.jwk, issuer: ISSUER, audience: AUDIENCE, algorithms: ['EdDSA'] })
    expect((await auth.authenticate(request(await sign(keys[2]!)))).ok).toBe(true)
    expect((await auth.authenticate(request(await sign(keys[1]!)))).ok).toBe(false)
  })

  it.each([
    [{ algorithms: ['none'] }, 'jwt.algorithms: expected signing algorithms'],
    [{ algorithms: ['HS256'] }, 'jwt.algorithms: expected only asymmetric algorithms with a JWKS, got "HS256"'],
    [{ algorithms: [] }, 'jwt.algorithms: expected a non-empty string or array of strings'],
    [{ issuer: [] }, 'jwt.issuer: expected a non-empty string or array of strings'],
    [{ audience: undefined }, 'jwt.audience: expected a non-empty string or array of strings'],
    [{ key: { kty: 'OKP' } }, 'jwt: expected exactly one of jwksUrl or key, got "both"'],
    [{ jwksUrl: 'http://id.example.test/jwks' }, 'jwt.jwksUrl: expected an https URL (plain http only on loopback)'],
    [{ jwksUrl: undefined, key: { kty: 'EC', crv: 'P-256', x: 'AAAA' } }, 'jwt.key: expected a valid public JWK'],
    [
      { jwksUrl: undefined, key: { kty: 'EC', crv: 'P-256', x: 'a', y: 'b', d: 'c' } },
      'jwt.key: expected the public half of the key',
    ],
    [
      { jwksUrl: undefined, key: new Uint8Array(32), algorithms: ['HS256', 'RS256'] },
      'jwt.algorithms: expected only HS* with a shared secret, got "RS256"',
    ],
    [
      { jwksUrl: undefined, key: new Uint8Array(8), algorithms: ['HS256'] },
      'jwt.key: expected a shared secret of at least 32 bytes',
    ],
  ])('refuses %j at construction', (change, message) => {
    const base = { jwksUrl: 'https://id.example.test/jwks', issuer: ISSUER, audience: AUDIENCE, algorithms: ['ES256'] }
    expect(() => createJwtVerifier({ ...base, ...change } as never)).toThrow(message)
  })
})

describe('the kid of a token', () => {
  const local = async (kid: string | undefined) => {
    const key = await signingKey('ES256', kid ?? 'unused')
    const jwk = { ...key.jwk }
    if (kid === undefined) delete jwk.kid
    const store = new MemoryKeyStore({ tenants: [tenant] })
    const auth = createAuthenticator(store, {
      jwt: { key: jwk, issuer: ISSUER, audience: AUDIENCE, algorithms: ['ES256'] },
    })
    const signWith = (headerKid: string | undefined) =>
      new SignJWT({ tenant_id: 't-acme', scope: 'keys:read' })
        .setProtectedHeader(headerKid === undefined ? { alg: 'ES256' } : { alg: 'ES256', kid: headerKid })
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setExpirationTime('5m')
        .sign(key.pair.privateKey)
    return { auth, signWith }
  }

  it('refuses a token with an unknown kid, or none, when the local key has a kid, and names the token in the 401', async () => {
    const { auth, signWith } = await local('server-1')
    expect((await auth.authenticate(request(await signWith('server-1')))).ok).toBe(true)
    for (const kid of ['someone-else', undefined]) {
      const decision = await auth.authenticate(request(await signWith(kid)))
      expect(decision).toMatchObject({ ok: false, status: 401, code: 'unauthorized' })
      if (!decision.ok)
        expect(JSON.parse(decision.body)).toEqual({
          error: 'unauthorized',
          message: 'Access token invalid, expired or revoked.',
        })
    }
  })

  it('accepts any kid when the local key has none', async () => {
    const { auth, signWith } = await local(undefined)
    expect((await auth.authenticate(request(await signWith(undefined)))).ok).toBe(true)
  })

  it('refuses a token without a kid against a JWKS', async () => {
    const key = await signingKey('ES256', 'only-1')
    const server = createServer((_req, res) => res.end(JSON.stringify({ keys: [key.jwk] })))
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`
      const auth = createAuthenticator(new MemoryKeyStore({ tenants: [tenant] }), {
        jwt: { jwksUrl: url, issuer: ISSUER, audience: AUDIENCE, algorithms: ['ES256'] },
      })
      const token = (kid?: string) =>
        new SignJWT({ tenant_id: 't-acme' })
          .setProtectedHeader(kid === undefined ? { alg: 'ES256' } : { alg: 'ES256', kid })
          .setIssuer(ISSUER)
          .setAudience(AUDIENCE)
          .setExpirationTime('5m')
          .sign(key.pair.privateKey)
      expect((await auth.authenticate(request(await token('only-1')))).ok).toBe(true)
      expect(await auth.authenticate(request(await token()))).toMatchObject({ ok: false, status: 401 })
    } finally {
      server.close()
    }
  })
})

describe('createTokenIssuer', () => {
  it('trades a key for a short-lived token that carries no more than the key, verifiable with the published JWKS', async () => {
    const pair = await generateKeyPair('ES256', { extractable: true })
    const privateKey = { ...(await exportJWK(pair.privateKey)), kid: 'server-1' }
    const issuer = createTokenIssuer({
      privateKey,
      issuer: 'https://api.example.test',
      audience: 'https://api.example.test',
      ttlSeconds: 300,
    })
    const jwks = issuer.jwks()
    expect(jwks.keys).toHaveLength(1)
    expect(jwks.keys[0]).not.toHaveProperty('d')

    const store = new MemoryKeyStore({ tenants: [tenant] })
    const auth = createAuthenticator(store, {
      jwt: {
        key: jwks.keys[0]!,
        issuer: 'https://api.example.test',
        audience: 'https://api.example.test',
        algorithms: ['ES256'],
      },
    })
    const { key } = await auth.keys.create('t-acme', { label: 'agent', permissions: ['keys:read', 'keys:write'] })
    const viaKey = (await auth.authenticate(request(key))) as AdmittedDecision
    const issued = await issuer.issue(viaKey.principal.credential, { permissions: ['keys:read'], ttlSeconds: 60 })
    expect(issued).toMatchObject({ tokenType: 'Bearer', expiresIn: 60, permissions: ['keys:read'] })
    const viaToken = await auth.authenticate(request(issued.accessToken))
    expect(viaToken).toMatchObject({
      ok: true,
      principal: { tenant: { tenantId: 't-acme' }, credential: { type: 'jwt', permissions: ['keys:read'] } },
    })

    await expect(issuer.issue(viaKey.principal.credential, { permissions: ['billing:write'] })).rejects.toMatchObject({
      name: 'SaikuPermissionError',
      code: 'ERR_SAIKU_PERMISSION_DENIED',
      permissions: ['billing:write'],
    })
    await expect(issuer.issue(viaKey.principal.credential, { ttlSeconds: 3_600 })).rejects.toMatchObject({
      code: 'ERR_SAIKU_INVALID_INPUT',
      field: 'ttlSeconds',
    })
    const expired = { ...viaKey.principal.credential, expiresAt: new Date(Date.now() - 1_000) }
    await expect(issuer.issue(expired)).rejects.toMatchObject({
      name: 'SaikuCredentialExpiredError',
      code: 'ERR_SAIKU_CREDENTIAL_EXPIRED',
    })
    const { sourceKeyId: _sourceKeyId, ...rest } = viaKey.principal.credential
    const unexchangeable = { ...rest, type: 'jwt' as const }
    await expect(issuer.issue(unexchangeable)).rejects.toMatchObject({
      code: 'ERR_SAIKU_PERMISSION_DENIED',
      permissions: [],
    })
  })
})
