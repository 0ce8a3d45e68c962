import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import { serve, type ServerType } from '@hono/node-server'
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

describe('example hono-basic', () => {
  const servers: ServerType[] = []
  const children: ChildProcess[] = []
  afterAll(async () => {
    for (const server of servers) await new Promise((resolve) => server.close(resolve))
    for (const child of children) {
      if (child.exitCode !== null) continue
      child.kill('SIGTERM')
      await once(child, 'exit')
    }
  })

  it('serves the tenant, the key list, and JSON errors', async () => {
    const store = new MemoryKeyStore()
    const server = serve({ fetch: createApp(store).fetch, port: 0, hostname: '127.0.0.1' })
    servers.push(server)
    await once(server, 'listening')
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const { key, keyId } = await seedDemoTenant(store)
    const authorization = `Bearer ${key}`
    const tenant = await fetch(`${url}/me/tenant`, { headers: { authorization } })
    expect(tenant.status).toBe(200)
    expect(await tenant.json()).toEqual({
      tenantId: '81e301f2-5d0c-4c4e-9a57-3f0e7f1d2c10',
      tenantSlug: 'acme',
      tier: 'starter',
      connectionName: 'production-warehouse',
    })
    expect(tenant.headers.get('ratelimit-policy')).toBe('"minute";q=60;w=60, "hour";q=1000;w=3600')
    expect(tenant.headers.get('ratelimit')).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
    const keys = await fetch(`${url}/me/api-keys`, { headers: { authorization } })
    const text = await keys.text()
    expect((JSON.parse(text) as { keys: unknown[] }).keys).toEqual([
      expect.objectContaining({ keyId, label: 'production-agent' }),
    ])
    expect(text).not.toContain(key)
    const missing = await fetch(`${url}/me/tenant`)
    expect(missing.status).toBe(401)
    expect(await missing.json()).toEqual({ error: 'unauthorized', message: 'API key missing or invalid.' })
    const unknown = await fetch(`${url}/me/nowhere`, { headers: { authorization } })
    expect(unknown.status).toBe(404)
    expect(((await unknown.json()) as { error: string }).error).toBe('not_found')
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
