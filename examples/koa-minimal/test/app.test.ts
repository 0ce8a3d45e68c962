import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import request from 'supertest'
import { afterAll, beforeEach, describe, expect, it } from 'vitest'
import { createApp, DEMO_TENANT_ID, demoStore } from '../src/app.js'

describe('example koa-minimal', () => {
  let app: ReturnType<ReturnType<typeof createApp>['callback']>
  let key: string
  beforeEach(async () => {
    const demo = await demoStore()
    app = createApp(demo.store).callback()
    key = demo.key
  })
  const withKey = (path: string) => request(app).get(path).set('Authorization', `Bearer ${key}`)

  it('answers GET /me/tenant with the tenant of the key, and the RateLimit headers', async () => {
    const res = await withKey('/me/tenant')
    expect(res.status).toBe(200)
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8')
    expect(res.body).toEqual({
      tenantId: DEMO_TENANT_ID,
      tenantSlug: 'acme',
      tier: 'starter',
      connectionName: 'production-warehouse',
    })
    expect(res.headers['ratelimit-policy']).toBe('"minute";q=60;w=60, "hour";q=1000;w=3600')
    expect(res.headers.ratelimit).toMatch(/^"minute";r=59;t=\d+, "hour";r=999;t=\d+$/)
  })

  it('answers 401 in JSON with a challenge, without a key or with a wrong one', async () => {
    for (const res of [
      await request(app).get('/me/tenant'),
      await request(app).get('/me/tenant').set('Authorization', 'Bearer sk_live_nope'),
    ]) {
      expect(res.status).toBe(401)
      expect(res.body).toEqual({ error: 'unauthorized', message: 'API key missing or invalid.' })
      expect(res.headers['www-authenticate']).toMatch(/^Bearer realm="saiku"/)
      expect(res.headers.ratelimit).toBeUndefined()
    }
  })

  it('answers 429 with Retry-After once the starter tier’s 60 requests a minute are spent', async () => {
    for (let i = 0; i < 60; i++) expect((await withKey('/me/tenant')).status).toBe(200)
    const res = await withKey('/me/tenant')
    expect(res.status).toBe(429)
    expect(res.body).toEqual({
      error: 'rate_limited',
      message: expect.stringMatching(/^Rate limit exceeded: 60 requests per minute\. Retry in \d+ s\.$/),
    })
    const retryAfter = Number(res.headers['retry-after'])
    expect(retryAfter).toBeGreaterThan(0)
    expect(retryAfter).toBeLessThanOrEqual(60)
    expect(res.headers.ratelimit).toMatch(/^"minute";r=0;t=\d+, "hour";r=940;t=\d+$/)
  })

  it('answers 404 in JSON for a route it does not have, and for another method on /me/tenant', async () => {
    for (const res of [
      await withKey('/me/nowhere'),
      await request(app).post('/me/tenant').set('Authorization', `Bearer ${key}`),
    ]) {
      expect(res.status).toBe(404)
      expect(res.body).toEqual({ error: 'not_found', message: expect.any(String) })
    }
  })

  describe('src/server.ts', () => {
    let child: ChildProcess | undefined
    afterAll(async () => {
      if (child === undefined || child.exitCode !== null) return
      child.kill('SIGTERM')
      await once(child, 'exit')
    })

    it('listens on PORT and prints the demo key once, in a curl line that works', async () => {
      const cwd = fileURLToPath(new URL('..', import.meta.url))
      // In the repository the workspace packages resolve to their sources; a copied app ignores the condition.
      child = spawn(process.execPath, ['--conditions=@saiku/source', '--import', 'tsx', 'src/server.ts'], {
        cwd,
        env: { ...process.env, PORT: '0', HOST: '127.0.0.1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let output = ''
      const match = await new Promise<RegExpMatchArray>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the example did not start:\n${output}`)), 30_000)
        const onData = (chunk: Buffer) => {
          output += chunk.toString()
          const found = /curl (http:\/\/127\.0\.0\.1:\d+)\/me\/tenant -H "Authorization: Bearer (sk_live_\w+)"\n/.exec(
            output,
          )
          if (found !== null) {
            clearTimeout(timer)
            resolve(found)
          }
        }
        child!.stdout!.on('data', onData)
        child!.stderr!.on('data', onData)
        child!.once('exit', (code) => reject(new Error(`the example exited with ${code}:\n${output}`)))
      })
      expect(output.split(match[2]!).length - 1, 'the key is printed once').toBe(1)
      const res = await fetch(`${match[1]}/me/tenant`, { headers: { authorization: `Bearer ${match[2]}` } })
      expect(res.status).toBe(200)
      expect(await res.json()).toEqual({
        tenantId: DEMO_TENANT_ID,
        tenantSlug: 'acme',
        tier: 'starter',
        connectionName: 'production-warehouse',
      })
    })
  })
})
