import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import express from 'express'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose'
import request from 'supertest'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MemoryKeyStore } from '@saiku/express'
import { keysAndTokens } from './jwt.js'

const tenant = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'w',
  subscription: { status: 'active' as const },
}

// The JWT guide's set-up, against an identity provider's JWKS served on loopback.
describe("the JWT guide's set-up, run", () => {
  let server: Server
  let jwksUrl: string
  let privateKey: CryptoKey
  beforeAll(async () => {
    const pair = await generateKeyPair('ES256')
    privateKey = pair.privateKey
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'idp-1', alg: 'ES256' }
    server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ keys: [jwk] }))
    }).listen(0, '127.0.0.1')
    await once(server, 'listening')
    jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`
  })
  afterAll(() => server.close())

  const token = (claims: { aud?: string; iss?: string } = {}) =>
    new SignJWT({ tenant_id: 't-acme', scope: 'keys:read' })
      .setProtectedHeader({ alg: 'ES256', kid: 'idp-1' })
      .setIssuer(claims.iss ?? 'https://id.example.com')
      .setAudience(claims.aud ?? 'saiku-api')
      .setSubject('user-7')
      .setExpirationTime('5m')
      .sign(privateKey)

  it("admits the provider's token and an API key on one budget, and refuses a token for another audience", async () => {
    const store = new MemoryKeyStore({ tenants: [tenant] })
    const auth = keysAndTokens(store, jwksUrl)
    const app = express()
      .use(auth)
      .get('/me/tenant', (req, res) => {
        res.json({ ...req.saiku!.tenant, via: req.saiku!.credential.type })
      })
    const { key } = await auth.authenticator.keys.create('t-acme', { label: 'agent' })
    const byKey = await request(app).get('/me/tenant').set('Authorization', `Bearer ${key}`)
    const byToken = await request(app)
      .get('/me/tenant')
      .set('Authorization', `Bearer ${await token()}`)
    expect([byKey.status, byKey.body.via, byKey.headers.ratelimit]).toEqual([
      200,
      'api_key',
      '"minute";r=59;t=60, "hour";r=999;t=3600',
    ])
    expect([byToken.status, byToken.body.tenantId, byToken.body.via]).toEqual([200, 't-acme', 'jwt'])
    expect(byToken.headers.ratelimit).toMatch(/^"minute";r=58;/)
    const otherAudience = await request(app)
      .get('/me/tenant')
      .set('Authorization', `Bearer ${await token({ aud: 'another-api' })}`)
    expect([otherAudience.status, otherAudience.body, otherAudience.headers['www-authenticate']]).toEqual([
      401,
      { error: 'unauthorized', message: 'Access token invalid, expired or revoked.' },
      expect.stringContaining('error="invalid_token"'),
    ])
    auth.authenticator.close()
  })
})
