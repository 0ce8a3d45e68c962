import Ajv2020 from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openApiDocument } from '../src/openapi.js'
import { cli, cliJson, startServer, tempDatabase, waitFor, type RunningServer, type TempDir } from './helpers.js'

const SPEC_402 = { error: 'payment_required', message: 'This feature requires an active subscription or trial. Visit /billing to start your 14-day trial.' }
const UNAUTHORIZED = { error: 'unauthorized', message: 'API key missing or invalid.' }

interface Recorded {
  method: string
  path: string
  status: number
  body: unknown
}
/** Every response the tests saw, checked against the OpenAPI document at the end. */
const recorded: Recorded[] = []

interface Reply {
  status: number
  headers: Headers
  text: string
  body: any
}

async function call(server: RunningServer, method: string, path: string, options: { key?: string; json?: unknown; raw?: string; contentType?: string } = {}): Promise<Reply> {
  const headers: Record<string, string> = {}
  if (options.key !== undefined) headers.authorization = `Bearer ${options.key}`
  let body: string | undefined
  if (options.json !== undefined) body = JSON.stringify(options.json)
  if (options.raw !== undefined) body = options.raw
  if (body !== undefined) headers['content-type'] = options.contentType ?? 'application/json'
  const res = await fetch(`${server.url}${path}`, { method, headers, ...(body === undefined ? {} : { body }) })
  const text = await res.text()
  const parsed = text === '' ? undefined : JSON.parse(text)
  recorded.push({ method, path, status: res.status, body: parsed })
  return { status: res.status, headers: res.headers, text, body: parsed }
}

let db: TempDir
let server: RunningServer
let env: Record<string, string>

beforeAll(async () => {
  db = tempDatabase()
  env = { DATABASE_URL: db.databaseUrl, REDIS_URL: '', SAIKU_DATA_DIR: db.path }
  server = await startServer(env, 'pnpm start')
})
afterAll(async () => {
  await server?.stop()
  db?.remove()
})

describe('the reference server, as a person starts it', () => {
  it('prints a demo key and a curl line that work', async () => {
    expect(server.demoKey).toMatch(/^sk_live_/)
    expect(server.curlLine).toBe(`curl ${server.url}/me/tenant -H "Authorization: Bearer ${server.demoKey}"`)
    const [, url, header] = server.curlLine!.match(/^curl (\S+) -H "Authorization: (.+)"$/)!
    const res = await fetch(url!, { headers: { authorization: header! } })
    expect(res.status).toBe(200)
    const body = (await res.json()) as Record<string, unknown>
    expect(Object.keys(body).sort()).toEqual(['connectionName', 'tenantId', 'tenantSlug', 'tier'])
    expect(body).toMatchObject({ tenantSlug: 'acme', tier: 'starter', connectionName: 'production-warehouse' })
  })

  it('rotates a key without downtime', async () => {
    const old = server.demoKey!
    const listed = await call(server, 'GET', '/me/api-keys', { key: old })
    const oldId = listed.body.keys[0].keyId as string
    const minted = await call(server, 'POST', '/me/api-keys', { key: old, json: { label: 'production-agent' } })
    expect(minted.status).toBe(201)
    expect(minted.body).toMatchObject({ label: 'production-agent', permissions: ['keys:read', 'keys:write', 'billing:write'], lastUsedAt: null })
    const fresh = minted.body.secret as string

    expect((await call(server, 'GET', '/me/tenant', { key: old })).status).toBe(200)
    expect((await call(server, 'GET', '/me/tenant', { key: fresh })).status).toBe(200)
    const both = await call(server, 'GET', '/me/api-keys', { key: fresh })
    expect(both.body.keys.map((k: { label: string }) => k.label)).toEqual(['production-agent', 'production-agent'])
    expect(both.text).not.toContain(fresh)
    expect(both.text).not.toContain(old)

    expect((await call(server, 'DELETE', `/me/api-keys/${oldId}`, { key: fresh })).status).toBe(204)
    const refused = await call(server, 'GET', '/me/tenant', { key: old })
    expect(refused.status).toBe(401)
    expect(refused.body).toEqual(UNAUTHORIZED)
    expect((await call(server, 'GET', '/me/tenant', { key: fresh })).status).toBe(200)
    const after = await call(server, 'GET', '/me/api-keys', { key: fresh })
    expect(after.body.keys.map((k: { keyId: string }) => k.keyId)).toEqual([minted.body.keyId])
    rotatedKey = fresh
  })
})

let rotatedKey = ''

describe('errors, with exact bodies and headers', () => {
  it('401 without a key, with a bad one', async () => {
    const none = await call(server, 'GET', '/me/tenant')
    expect(none.status).toBe(401)
    expect(none.body).toEqual(UNAUTHORIZED)
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="saiku"')
    const bad = await call(server, 'GET', '/me/tenant', { key: 'sk_live_nope' })
    expect(bad.body).toEqual(UNAUTHORIZED)
    expect(bad.headers.get('www-authenticate')).toContain('error="invalid_token"')
    expect(bad.headers.get('content-type')).toBe('application/json; charset=utf-8')
  })

  it('402 without a subscription, billing still open, and a trial lifts it', async () => {
    await cliJson(['tenants', 'create', '--slug', 'initech', '--tier', 'team', '--subscription', 'none'], env)
    const { secret } = await cliJson<{ secret: string }>(['keys', 'create', '--tenant', 'initech', '--label', 'ops'], env)
    const refused = await call(server, 'GET', '/me/tenant', { key: secret })
    expect(refused.status).toBe(402)
    expect(refused.body).toEqual(SPEC_402)
    const billing = await call(server, 'GET', '/me/billing', { key: secret })
    expect(billing.body).toEqual({ status: 'none', trialEndsAt: null, trialAvailable: true })
    const trial = await call(server, 'POST', '/me/billing/trial', { key: secret })
    expect(trial.status).toBe(201)
    expect(trial.body.status).toBe('trialing')
    expect(Date.parse(trial.body.trialEndsAt) - Date.now()).toBeGreaterThan(13.9 * 86_400_000)
    expect((await call(server, 'GET', '/me/tenant', { key: secret })).status).toBe(200)
    const again = await call(server, 'POST', '/me/billing/trial', { key: secret })
    expect(again.status).toBe(409)
    expect(again.body).toEqual({ error: 'conflict', message: 'This tenant has already used its trial.' })
  })

  it('403 for a key without the permission, and for granting more than it holds', async () => {
    const { secret } = await cliJson<{ secret: string }>(['keys', 'create', '--tenant', 'acme', '--label', 'reader', '--permissions', 'keys:read'], env)
    const res = await call(server, 'POST', '/me/api-keys', { key: secret, json: { label: 'x' } })
    expect(res.status).toBe(403)
    expect(res.body).toEqual({ error: 'forbidden', message: 'This API key lacks the permission keys:write.' })
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer realm="saiku", error="insufficient_scope", error_description="[^"]+", scope="keys:write"$/)
    const escalate = await call(server, 'POST', '/me/api-keys', { key: rotatedKey, json: { label: 'root', permissions: ['*'] } })
    expect(escalate.status).toBe(403)
    expect(escalate.body.message).toBe('A key cannot grant what it does not hold: *.')
  })

  it("404 for another tenant's key, byte for byte the same as an unknown one", async () => {
    await cliJson(['tenants', 'create', '--slug', 'globex', '--tier', 'business', '--subscription', 'active'], env)
    const theirs = await cliJson<{ keyId: string; secret: string }>(['keys', 'create', '--tenant', 'globex', '--label', 'theirs'], env)
    const foreign = await call(server, 'DELETE', `/me/api-keys/${theirs.keyId}`, { key: rotatedKey })
    const unknown = await call(server, 'DELETE', '/me/api-keys/AAAAAAAAAAAA', { key: rotatedKey })
    const malformed = await call(server, 'DELETE', '/me/api-keys/not-a-key-id', { key: rotatedKey })
    expect(foreign.status).toBe(404)
    expect(foreign.text).toBe(unknown.text)
    expect(malformed.text).toBe(unknown.text)
    expect(foreign.body).toEqual({ error: 'not_found', message: 'Resource does not exist.' })
    expect((await call(server, 'GET', '/me/tenant', { key: theirs.secret })).status).toBe(200)
  })

  it('429 with Retry-After once the starter minute is spent', async () => {
    await cliJson(['tenants', 'create', '--slug', 'hooli', '--tier', 'starter', '--subscription', 'active'], env)
    const { secret } = await cliJson<{ secret: string }>(['keys', 'create', '--tenant', 'hooli', '--label', 'burst'], env)
    for (let i = 0; i < 60; i++) expect((await call(server, 'GET', '/me/tenant', { key: secret })).status).toBe(200)
    const res = await call(server, 'GET', '/me/tenant', { key: secret })
    expect(res.status).toBe(429)
    expect(res.body.error).toBe('rate_limited')
    expect(res.body.message).toMatch(/^Rate limit exceeded: 60 requests per minute\. Retry in \d+ s\.$/)
    const retryAfter = Number(res.headers.get('retry-after'))
    expect(retryAfter).toBeGreaterThanOrEqual(1)
    expect(retryAfter).toBeLessThanOrEqual(60)
    expect(res.body.message).toContain(`Retry in ${retryAfter} s.`)
    expect(res.headers.get('ratelimit')).toMatch(/^"minute";r=0;t=\d+, "hour";r=940;t=\d+$/)
    expect(res.headers.get('cache-control')).toBe('no-store')
  })

  it('answers unknown routes, bad JSON, big or non-JSON bodies and wrong methods as JSON', async () => {
    const key = rotatedKey
    const cases: [Reply, number, string][] = [
      [await call(server, 'GET', '/me/nowhere', { key }), 404, 'not_found'],
      [await call(server, 'POST', '/me/api-keys', { key, raw: '{"label":' }), 400, 'invalid_request'],
      [await call(server, 'POST', '/me/api-keys', { key, json: { label: 'x'.repeat(20_000) } }), 413, 'payload_too_large'],
      [await call(server, 'POST', '/me/api-keys', { key, raw: 'label=x', contentType: 'text/plain' }), 415, 'unsupported_media_type'],
      [await call(server, 'POST', '/me/api-keys', { key, json: { label: '' } }), 400, 'invalid_request'],
      [await call(server, 'POST', '/me/api-keys', { key, json: ['label'] }), 400, 'invalid_request'],
      [await call(server, 'PUT', '/me/tenant', { key }), 405, 'method_not_allowed'],
      [await call(server, 'DELETE', '/me/api-keys', { key }), 405, 'method_not_allowed'],
    ]
    for (const [reply, status, error] of cases) {
      expect(reply.status).toBe(status)
      expect(reply.headers.get('content-type')).toBe('application/json; charset=utf-8')
      expect(Object.keys(reply.body).sort()).toEqual(['error', 'message'])
      expect(reply.body.error).toBe(error)
      expect(reply.text).not.toMatch(/at .*\.(ts|js):\d+/)
    }
    expect(cases[6]![0].headers.get('allow')).toBe('GET')
  })
})

describe('signed tokens', () => {
  it('trades an API key for a short-lived token with narrowed permissions, verifiable with the published JWKS', async () => {
    const jwks = await call(server, 'GET', '/.well-known/jwks.json')
    expect(jwks.status).toBe(200)
    expect(jwks.body.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256' })
    expect(jwks.body.keys[0].d).toBeUndefined()

    const issued = await call(server, 'POST', '/me/tokens', { key: rotatedKey, json: { permissions: ['keys:read'], ttlSeconds: 120 } })
    expect(issued.status).toBe(201)
    expect(issued.body).toMatchObject({ tokenType: 'Bearer', expiresIn: 120, permissions: ['keys:read'] })
    const token = issued.body.accessToken as string

    const tenant = await call(server, 'GET', '/me/tenant', { key: token })
    expect(tenant.status).toBe(200)
    expect(tenant.body.tenantSlug).toBe('acme')
    expect((await call(server, 'GET', '/me/api-keys', { key: token })).status).toBe(200)
    const denied = await call(server, 'POST', '/me/api-keys', { key: token, json: { label: 'x' } })
    expect(denied.status).toBe(403)
    const again = await call(server, 'POST', '/me/tokens', { key: token })
    expect(again.body).toEqual({ error: 'forbidden', message: 'Only an API key can be exchanged for a token.' })
    // Even a token that carries keys:write cannot turn itself into a lasting key, nor revoke one.
    const writer = (await call(server, 'POST', '/me/tokens', { key: rotatedKey, json: { permissions: ['keys:write'] } })).body.accessToken as string
    const minted = await call(server, 'POST', '/me/api-keys', { key: writer, json: { label: 'from a token' } })
    expect(minted.status).toBe(403)
    expect(minted.body).toEqual({ error: 'forbidden', message: 'Only an API key can mint API keys.' })
    expect((await call(server, 'DELETE', '/me/api-keys/AAAAAAAAAAAA', { key: writer })).status).toBe(403)

    const widened = await call(server, 'POST', '/me/tokens', { key: rotatedKey, json: { permissions: ['*'] } })
    expect(widened.status).toBe(403)
    const tampered = await call(server, 'GET', '/me/tenant', { key: `${token.slice(0, -4)}AAAA` })
    expect(tampered.status).toBe(401)
    expect(tampered.headers.get('www-authenticate')).toContain('error="invalid_token"')
  })
})

describe('the operator CLI on the same data file', () => {
  it('creates, lists and revokes; the running server refuses the revoked key within a second or two', async () => {
    await cliJson(['tenants', 'create', '--slug', 'umbrella', '--tier', 'enterprise', '--per-minute', '5000', '--per-hour', '200000', '--subscription', 'active', '--connection', 'umbrella-dwh'], env)
    const created = await cli(['keys', 'create', '--tenant', 'umbrella', '--label', 'etl'], env)
    expect(created.code).toBe(0)
    const secret = created.stdout.match(/^(sk_live_\w+)$/m)![1]!
    expect(created.stdout.match(/sk_live_/g)).toHaveLength(1)

    const tenant = await call(server, 'GET', '/me/tenant', { key: secret })
    expect(tenant.body).toMatchObject({ tenantSlug: 'umbrella', tier: 'enterprise', connectionName: 'umbrella-dwh' })
    expect(tenant.headers.get('ratelimit-policy')).toBe('"minute";q=5000;w=60, "hour";q=200000;w=3600')

    const listed = await cli(['keys', 'list', '--tenant', 'umbrella'], env)
    expect(listed.stdout).toContain('"etl"')
    expect(listed.stdout).not.toContain(secret.slice(21))
    const keyId = secret.slice(8, 20)
    expect((await cli(['keys', 'revoke', keyId], env)).code).toBe(0)
    await waitFor(async () => (await call(server, 'GET', '/me/tenant', { key: secret })).status === 401, 5_000)
    expect((await cli(['keys', 'revoke', keyId], env)).code).toBe(1)
  })

  it('fails with a clear message and a non-zero exit on bad arguments', { timeout: 60_000 }, async () => {
    const cases: [string[], number, string][] = [
      [['tenants', 'create', '--slug', 'x', '--tier', 'gold'], 2, '--tier: expected one of starter, team, business, enterprise, got "gold"'],
      [['tenants', 'create', '--tier', 'team'], 2, '--slug is required'],
      [['tenants', 'create', '--slug', 'acme', '--tier', 'team'], 1, 'A tenant with slug "acme" exists already.'],
      [['tenants', 'create', '--slug', 'big', '--tier', 'enterprise'], 1, 'limits: expected { perMinute, perHour }'],
      [['tenants', 'create', '--slug', 'odd', '--tier', 'team', '--per-minute', '10'], 2, '--per-minute and --per-hour go together'],
      [['keys', 'create', '--tenant', 'nobody', '--label', 'x'], 1, 'No tenant with slug "nobody".'],
      [['keys', 'create', '--tenant', 'acme', '--label', 'x', '--permissions', 'root'], 2, '--permissions: unknown root'],
      [['keys', 'revoke', 'nope'], 2, '"nope" is not a key ID'],
      [['keys', 'frobnicate'], 2, 'unknown command "keys frobnicate"'],
      [['keys', 'list', '--tenant', 'acme', '--colour'], 2, "Unknown option '--colour'"],
    ]
    for (const [args, code, message] of cases) {
      const result = await cli(args, env)
      expect(result.code, args.join(' ')).toBe(code)
      expect(result.stderr).toContain(message)
    }
    const json = await cli(['keys', 'revoke', 'nope', '--json'], env)
    expect(JSON.parse(json.stderr)).toEqual({ error: 'usage', message: '"nope" is not a key ID (12 letters and digits)' })
  })
})

describe('restart', () => {
  it('keeps tenants, keys and revocations, and seeds nothing twice', async () => {
    const revokedDemo = server.demoKey!
    await server.stop()
    server = await startServer(env)
    expect(server.demoKey).toBeUndefined()
    expect(server.stderr()).toContain('pnpm saiku keys create --tenant acme')
    expect((await call(server, 'GET', '/me/tenant', { key: rotatedKey })).status).toBe(200)
    expect((await call(server, 'GET', '/me/tenant', { key: revokedDemo })).status).toBe(401)
  })
})

describe('logs', () => {
  it('hold a line per request and never a key, a digest or an Authorization value', async () => {
    const requests = server.logs.filter((line) => line.msg === 'request')
    expect(requests.length).toBeGreaterThan(0)
    expect(requests[0]).toMatchObject({ method: expect.any(String), path: expect.any(String), status: expect.any(Number) })
    expect(server.stdout()).not.toMatch(/sk_(live|test)_/)
    expect(server.stdout()).not.toMatch(/eyJ[\w-]+\.eyJ/)
    expect(server.stdout()).not.toMatch(/[0-9a-f]{64}/)
    expect(server.stdout().toLowerCase()).not.toContain('bearer')
  })
})

describe('the OpenAPI document', () => {
  it('describes every response the server gave', async () => {
    const served = await call(server, 'GET', '/openapi.json')
    expect(served.body).toEqual(JSON.parse(JSON.stringify(openApiDocument)))
    const ajv = new Ajv2020.default({ strict: false, allErrors: true })
    addFormats.default(ajv)
    ajv.addSchema({ $id: 'openapi', components: openApiDocument.components })
    const paths = openApiDocument.paths as Record<string, Record<string, { responses: Record<string, { content?: { 'application/json': { schema: { $ref: string } } } }> }>>
    const covered = new Set<string>()
    for (const reply of recorded) {
      if (reply.path === '/openapi.json') continue
      const template = reply.path.split('?')[0]!.replace(/^\/me\/api-keys\/[^/]+$/, '/me/api-keys/{keyId}')
      const operation = paths[template]?.[reply.method.toLowerCase()]
      if (operation === undefined) {
        // Undocumented routes and methods must still answer with the Error schema.
        expect(ajv.validate({ $ref: 'openapi#/components/schemas/Error' }, reply.body), `${reply.method} ${reply.path}`).toBe(true)
        continue
      }
      const response = operation.responses[String(reply.status)]
      expect(response, `${reply.method} ${template} ${reply.status} is documented`).toBeDefined()
      const schema = response!.content?.['application/json'].schema
      if (schema === undefined) expect(reply.body).toBeUndefined()
      else expect(ajv.validate({ $ref: `openapi${schema.$ref}` }, reply.body), `${reply.method} ${template} ${reply.status}: ${ajv.errorsText()}`).toBe(true)
      if (reply.status < 300) covered.add(`${reply.method} ${template}`)
    }
    const documented = Object.entries(paths).flatMap(([path, ops]) => Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`))
    expect([...covered].sort()).toEqual(documented.sort())
  })
})
