import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:http'
import { connect } from 'node:net'
import { fileURLToPath } from 'node:url'
import request from 'supertest'
import { afterAll, describe, expect, it } from 'vitest'
import { createKeyManager, MemoryKeyStore } from '@saiku/core'
import { createApp } from '../src/app.js'
import { seedDemoTenant } from '../src/demo.js'

const exampleDir = fileURLToPath(new URL('..', import.meta.url))

/** Starts `src/server.ts` as `npm start` does, on a free port, and reads the key and curl line it prints. */
async function startServer(): Promise<{ child: ChildProcess; url: string; key: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: exampleDir,
    env: { ...process.env, PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  const started = new Promise<RegExpMatchArray>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the example did not start:\n${output}`)), 30_000)
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      const match = output.match(
        /Try: curl (http:\/\/127\.0\.0\.1:\d+)\/me\/tenant -H "Authorization: Bearer (sk_live_\w+)"/,
      )
      if (match !== null) {
        clearTimeout(timer)
        resolve(match)
      }
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    child.once('exit', (code) => reject(new Error(`the example exited with ${code}:\n${output}`)))
  })
  const match = await started
  return { child, url: match[1]!, key: match[2]! }
}

describe('example node-http-basic', () => {
  it('serves the tenant, the key list, and JSON errors', async () => {
    const store = new MemoryKeyStore()
    const app = createApp(store)
    const { key, keyId } = await seedDemoTenant(store)
    const tenant = await request(app).get('/me/tenant').set('Authorization', `Bearer ${key}`)
    expect(tenant.status).toBe(200)
    expect(tenant.body).toEqual({
      tenantId: '81e301f2-5d0c-4c4e-9a57-3f0e7f1d2c10',
      tenantSlug: 'acme',
      tier: 'starter',
      connectionName: 'production-warehouse',
    })
    expect(tenant.headers['ratelimit-policy']).toBe('"minute";q=60;w=60, "hour";q=1000;w=3600')
    const keys = await request(app).get('/me/api-keys').set('Authorization', `Bearer ${key}`)
    expect(keys.body.keys).toEqual([expect.objectContaining({ keyId, label: 'production-agent' })])
    expect(keys.text).not.toContain(key)
    const missing = await request(app).get('/me/tenant')
    expect(missing.status).toBe(401)
    expect(missing.body).toEqual({ error: 'unauthorized', message: 'API key missing or invalid.' })
    const unknown = await request(app).get('/me/nowhere').set('Authorization', `Bearer ${key}`)
    expect(unknown.status).toBe(404)
    expect(unknown.body).toEqual({ error: 'not_found', message: 'Resource does not exist.' })
    // A key without keys:read is refused by the permission check, in the same JSON shape.
    const { key: bare } = await createKeyManager(store).create('81e301f2-5d0c-4c4e-9a57-3f0e7f1d2c10', {
      label: 'no-permissions',
    })
    const forbidden = await request(app).get('/me/api-keys').set('Authorization', `Bearer ${bare}`)
    expect(forbidden.status).toBe(403)
    expect(forbidden.body.error).toBe('forbidden')
    expect(forbidden.headers['www-authenticate']).toContain('error="insufficient_scope"')
  })

  it('answers a query string, and a request target no URL parser reads, as JSON, never a 500', async () => {
    const store = new MemoryKeyStore()
    const { key } = await seedDemoTenant(store)
    const app = createApp(store)
    const withQuery = await request(app).get('/me/tenant?verbose=1').set('Authorization', `Bearer ${key}`)
    expect(withQuery.status).toBe(200)
    expect(withQuery.body.tenantSlug).toBe('acme')
    // An absolute-form target that node:http takes as it is: a raw request, as a client or a proxy may send it.
    const server = createServer(app).listen(0, '127.0.0.1')
    await once(server, 'listening')
    try {
      const { port } = server.address() as { port: number }
      const socket = connect(port, '127.0.0.1')
      await once(socket, 'connect')
      socket.end(
        `GET http://[bad/me/tenant HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nConnection: close\r\n\r\n`,
      )
      let raw = ''
      socket.on('data', (chunk: Buffer) => (raw += chunk.toString()))
      await once(socket, 'close')
      expect(raw.split('\r\n')[0]).toBe('HTTP/1.1 404 Not Found')
      expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4))).toEqual({
        error: 'not_found',
        message: 'Resource does not exist.',
      })
    } finally {
      server.close()
    }
  })

  const children: ChildProcess[] = []
  afterAll(async () => {
    for (const child of children) {
      if (child.exitCode !== null) continue
      child.kill('SIGTERM')
      await once(child, 'exit')
    }
  })

  it('starts as a real server that prints a usable key and curl line', async () => {
    const started = await startServer()
    children.push(started.child)
    const res = await fetch(`${started.url}/me/tenant`, { headers: { authorization: `Bearer ${started.key}` } })
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ tenantSlug: 'acme', tier: 'starter' })
    const refused = await fetch(`${started.url}/me/tenant`, { headers: { authorization: 'Bearer nope' } })
    expect(refused.status).toBe(401)
    expect(refused.headers.get('www-authenticate')).toContain('error="invalid_token"')
  })
})
