import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import { describe, expect, it } from 'vitest'
import { grants } from './permissions.js'
import { createJwtVerifier, createTokenIssuer } from './jwt.js'
import { createKeyManager } from './management.js'
import { createAuthenticator } from './authenticator.js'
import type { AdmittedDecision } from './decision.js'
import { isPermission, labelProblem, MAX_PERMISSIONS, MemoryKeyStore } from './store.js'

const tenant = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'w',
  subscription: { status: 'active' as const },
}
const request = (token: string) => ({ headers: { authorization: `Bearer ${token}` }, method: 'GET', url: '/me/tenant' })
const SERVER = 'https://api.example.test'

async function setup(permissions: string[]) {
  const pair = await generateKeyPair('ES256', { extractable: true })
  const privateKey = { ...(await exportJWK(pair.privateKey)), kid: 'server-1' }
  const issuer = createTokenIssuer({ privateKey, issuer: SERVER, audience: SERVER })
  const store = new MemoryKeyStore({ tenants: [tenant] })
  const auth = createAuthenticator(store, {
    jwt: { key: issuer.jwks().keys[0]!, issuer: SERVER, audience: SERVER, algorithms: ['ES256'] },
  })
  const { key } = await auth.keys.create('t-acme', { label: 'agent', permissions })
  const admitted = (await auth.authenticate(request(key))) as AdmittedDecision
  const sign = (claims: Record<string, unknown>) =>
    new SignJWT({ tenant_id: 't-acme', ...claims })
      .setProtectedHeader({ alg: 'ES256', kid: 'server-1' })
      .setIssuer(SERVER)
      .setAudience(SERVER)
      .setExpirationTime('5m')
      .sign(pair.privateKey)
  return { issuer, auth, credential: admitted.principal.credential, sign }
}

describe('a key with an area wildcard cannot get a token with every permission', () => {
  it('refuses "keys:x *" with a 400, so no "*" reaches the scope', async () => {
    const { issuer, auth, credential } = await setup(['keys:*'])
    await expect(issuer.issue(credential, { permissions: ['keys:x *'] })).rejects.toMatchObject({
      code: 'ERR_SAIKU_INVALID_INPUT',
      field: 'permissions',
    })
    await expect(issuer.issue(credential, { permissions: ['keys:read\t*'] })).rejects.toMatchObject({
      code: 'ERR_SAIKU_INVALID_INPUT',
    })
    await expect(issuer.issue(credential, { permissions: ['*'] })).rejects.toMatchObject({
      code: 'ERR_SAIKU_PERMISSION_DENIED',
      permissions: ['*'],
    })
    const narrowed = await issuer.issue(credential, { permissions: ['keys:read'] })
    expect(await auth.authenticate(request(narrowed.accessToken))).toMatchObject({
      ok: true,
      principal: { credential: { permissions: ['keys:read'] } },
    })
    auth.close()
  })

  it('grants nothing to a permission outside the grammar, whatever the key holds', () => {
    expect(grants(['keys:*'], 'keys:x *')).toBe(false)
    expect(grants(['*'], 'keys:x *')).toBe(false)
    expect(grants(['keys:*'], 'keys:read')).toBe(true)
  })

  it('refuses a token whose claims carry a permission outside the grammar', async () => {
    const { auth, sign } = await setup(['keys:read'])
    for (const scope of ['keys:read Keys:Write', 'keys:read\t*', 'keys:read:*']) {
      expect(await auth.authenticate(request(await sign({ scope }))), scope).toMatchObject({ ok: false, status: 401 })
    }
    expect(await auth.authenticate(request(await sign({ scope: ['keys:read', 'a b'] })))).toMatchObject({
      ok: false,
      status: 401,
    })
    expect(await auth.authenticate(request(await sign({ scope: 'keys:read  keys:read' })))).toMatchObject({
      ok: true,
      principal: { credential: { permissions: ['keys:read'] } },
    })
    auth.close()
  })

  it('refuses the same in a custom claim mapping', async () => {
    const verifier = createJwtVerifier({
      key: new Uint8Array(32).fill(7),
      issuer: SERVER,
      audience: SERVER,
      algorithms: ['HS256'],
      toCredential: () => ({ tenantId: 't-acme', permissions: ['keys:read *'] }),
    })
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer(SERVER)
      .setAudience(SERVER)
      .setExpirationTime('5m')
      .sign(new Uint8Array(32).fill(7))
    expect(await verifier.verify(token)).toEqual({ ok: false, reason: 'invalid_jwt' })
  })
})

describe('the permission grammar', () => {
  it.each(['*', 'keys', 'keys:*', 'keys:read', 'reports:daily:read', 'a_b-c:x1'])('accepts %j', (permission) => {
    expect(isPermission(permission)).toBe(true)
  })
  it.each([
    '',
    ' ',
    'keys:read:*',
    'keys:*:read',
    '*:read',
    'Keys:read',
    'keys read',
    'keys:read ',
    'keys:',
    ':read',
    'keys::read',
    'k'.repeat(65),
    'keys:réad',
  ])('refuses %j', (permission) => {
    expect(isPermission(permission)).toBe(false)
  })
})

describe('permission lists are bounded and de-duplicated wherever they enter', () => {
  it('keeps one of each permission on a key, and refuses more than the bound', async () => {
    const keys = createKeyManager(new MemoryKeyStore({ tenants: [tenant] }))
    const created = await keys.create('t-acme', {
      label: 'x',
      permissions: Array.from({ length: 1_700 }, () => 'keys:read'),
    })
    expect(created.permissions).toEqual(['keys:read'])
    const many = Array.from({ length: MAX_PERMISSIONS + 1 }, (_, i) => `area${i}:read`)
    await expect(keys.create('t-acme', { label: 'x', permissions: many })).rejects.toMatchObject({
      code: 'ERR_SAIKU_INVALID_INPUT',
      field: 'permissions',
      message: `permissions must name at most ${MAX_PERMISSIONS} distinct permissions.`,
    })
  })

  it('issues only tokens that the bearer parser accepts, the largest included', async () => {
    const most = Array.from({ length: MAX_PERMISSIONS }, (_, i) => `${'p'.repeat(50)}${i}:${'r'.repeat(10)}`)
    const { issuer, auth, credential } = await setup(most)
    const issued = await issuer.issue(credential)
    expect(issued.permissions).toHaveLength(MAX_PERMISSIONS)
    expect(await auth.authenticate(request(issued.accessToken))).toMatchObject({ ok: true })
    const repeated = await issuer.issue(credential, { permissions: [most[0]!, most[0]!] })
    expect(repeated.permissions).toEqual([most[0]])
    auth.close()
  })

  it('refuses a token for a stored key that holds more than the bound, instead of issuing one too large', async () => {
    const { issuer, auth, credential } = await setup(['keys:read'])
    const legacy = { ...credential, permissions: Array.from({ length: 40 }, (_, i) => `area${i}:read`) }
    await expect(issuer.issue(legacy)).rejects.toMatchObject({ code: 'ERR_SAIKU_INVALID_INPUT', field: 'permissions' })
    auth.close()
  })
})

describe('labels', () => {
  it.each([
    ['a\u009bb', 'C1 (CSI)'],
    ['a\u202eb', 'a bidi override'],
    ['a\u200bb', 'a zero-width space'],
    ['a\ufeffb', 'a BOM'],
    ['a\ud800b', 'a lone high surrogate'],
    ['a\udc00', 'a lone low surrogate'],
    ['a\tb', 'a tab'],
    ['a\u007f', 'DEL'],
  ])('refuses %j (%s)', (label) => {
    expect(labelProblem(label)).toBe('label must not contain control or format characters')
  })
  it.each([
    ['\u3164', 'a Hangul filler'],
    ['\u3164\u3164 \uffa0', 'Hangul fillers and a space'],
    ['\u2800\u2800', 'blank Braille patterns'],
    ['\ufe0f', 'a variation selector'],
    ['\u034f', 'a combining grapheme joiner'],
    ['\u0301\u0301', 'marks with nothing to sit on'],
    ['\u115f\u1160', 'Hangul choseong and jungseong fillers'],
  ])('refuses %j, which shows nothing (%s)', (label) => {
    expect(labelProblem(label)).toBe('label must contain a visible character')
  })
  it('accepts text in any script, and emoji', () => {
    expect(labelProblem('production-agent 東京 ☃ 👍🏽 מפתח')).toBeNull()
    // Every format character is refused, the zero-width joiner of emoji sequences too.
    expect(labelProblem('👩\u200d💻')).not.toBeNull()
  })
})
