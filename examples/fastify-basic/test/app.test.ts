import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { afterAll, describe, expect, it } from 'vitest'
import { MemoryKeyStore } from '@saiku/core'
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

describe('example fastify-basic', () => {
  it('serves the tenant, the key list, and JSON errors', async () => {
    const store = new MemoryKeyStore()
    const app = createApp(store)
    apps.push(app)
    const { key, keyId } = await seedDemoTenant(store)
    const authorization = `Bearer ${key}`
    const tenant = await app.inject({ url: '/me/tenant', headers: { authorization } })
    expect(tenant.statusCode).toBe(200)
    expect(tenant.json()).toEqual({
      tenantId: '81e301f2-5d0c-4c4e-9a57-3f0e7f1d2c10',
      tenantSlug: 'acme',
      tier: 'starter',
      connectionName: 'production-warehouse',
    })
    expect(tenant.headers['ratelimit-policy']).toBe('"minute";q=60;w=60, "hour";q=1000;w=3600')
    const keys = await app.inject({ url: '/me/api-keys', headers: { authorization } })
    expect(keys.json().keys).toEqual([expect.objectContaining({ keyId, label: 'production-agent' })])
    expect(keys.body).not.toContain(key)
    const missing = await app.inject('/me/tenant')
    expect(missing.statusCode).toBe(401)
    expect(missing.json()).toEqual({ error: 'unauthorized', message: 'API key missing or invalid.' })
    const unknown = await app.inject({ url: '/me/nowhere', headers: { authorization } })
    expect(unknown.statusCode).toBe(404)
    expect(unknown.json().error).toBe('not_found')
  })

  const apps: FastifyInstance[] = []
  const children: ChildProcess[] = []
  afterAll(async () => {
    for (const app of apps) await app.close()
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
