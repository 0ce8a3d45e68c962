import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { ConfigError, readCorsOrigins } from '../src/config.js'
import { hasChromium, launchBrowser } from './browser.js'
import { processTimeout, startServer, tempDatabase, waitFor, type RunningServer, type TempDir } from './helpers.js'

// CORS_ORIGINS: scripts on the listed origins may call the bearer routes under /me with an exchanged
// token and read the rate-limit fields; the dashboard's cookie routes and the token exchange answer no origin.

vi.setConfig({ testTimeout: processTimeout(2), hookTimeout: processTimeout(3) })

const browserAvailable = hasChromium()
const STARTER_POLICY = '"minute";q=60;w=60, "hour";q=1000;w=3600'
const RATE_LIMIT = /^"minute";r=\d+;t=\d+, "hour";r=\d+;t=\d+$/

/** A front end on its own origin: one page, no script of its own (the test runs the page's fetch). */
async function frontEnd(): Promise<{ server: Server; origin: string }> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<!doctype html><title>Front end</title>')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

describe('CORS_ORIGINS, read at start', () => {
  it('takes exact origins, comma-separated, as browsers send them; unset or empty is none', () => {
    expect(readCorsOrigins(undefined)).toEqual([])
    expect(readCorsOrigins(' ')).toEqual([])
    expect(
      readCorsOrigins('https://app.example.com, http://localhost:5173,http://[::1]:8080,https://app.example.com'),
    ).toEqual(['https://app.example.com', 'http://localhost:5173', 'http://[::1]:8080'])
  })

  it.each([
    ['*', 'CORS_ORIGINS: "*" is not accepted: list each origin, e.g. https://app.example.com'],
    [
      'https://app.example.com/',
      'CORS_ORIGINS: expected an origin (scheme://host[:port], nothing after it), got "https://app.example.com/"; a browser sends "https://app.example.com"',
    ],
    [
      'https://App.Example.com:443',
      'CORS_ORIGINS: expected an origin (scheme://host[:port], nothing after it), got "https://App.Example.com:443"; a browser sends "https://app.example.com"',
    ],
    [
      'https://app.example.com/api',
      'CORS_ORIGINS: expected an origin (scheme://host[:port], nothing after it), got "https://app.example.com/api"',
    ],
    [
      'https://user:hunter2@app.example.com',
      'CORS_ORIGINS: expected an origin (scheme://host[:port], nothing after it), got "https://…@app.example.com"',
    ],
    [
      'app.example.com',
      'CORS_ORIGINS: expected a comma-separated list of origins such as https://app.example.com, got "app.example.com"',
    ],
    ['null', 'CORS_ORIGINS: expected a comma-separated list of origins such as https://app.example.com, got "null"'],
    [
      'ftp://files.example.com',
      'CORS_ORIGINS: expected a comma-separated list of origins such as https://app.example.com, got "ftp://files.example.com"',
    ],
    [
      'https://a.example.com,,https://b.example.com',
      'CORS_ORIGINS: expected a comma-separated list of origins such as https://app.example.com, got ""',
    ],
  ])('refuses %j in one line', (value, message) => {
    expect(() => readCorsOrigins(value)).toThrow(ConfigError)
    expect(() => readCorsOrigins(value)).toThrow(message)
  })

  it('never shows a password written into an entry', () => {
    for (const value of [
      'https://user:hunter2@app.example.com',
      'https://user:hunter2@app.example.com/',
      'ftp://u:hunter2@x',
    ]) {
      let message = ''
      try {
        readCorsOrigins(value)
      } catch (error) {
        message = (error as Error).message
      }
      expect(message).toMatch(/^CORS_ORIGINS: /)
      expect(message).not.toContain('hunter2')
    }
  })

  it('stops the server at start, saying which setting and why', async () => {
    const db = tempDatabase()
    try {
      const env = { DATABASE_URL: db.databaseUrl, REDIS_URL: '', SAIKU_DATA_DIR: db.path }
      await expect(startServer({ ...env, CORS_ORIGINS: 'https://app.example.com/' })).rejects.toThrow(
        'CORS_ORIGINS: expected an origin (scheme://host[:port], nothing after it), got "https://app.example.com/"; a browser sends "https://app.example.com"',
      )
    } finally {
      db.remove()
    }
  })
})

describe('CORS on the reference server', () => {
  let db: TempDir
  let server: RunningServer
  let listed: { server: Server; origin: string }
  let unlisted: { server: Server; origin: string }
  let key: string

  beforeAll(async () => {
    listed = await frontEnd()
    unlisted = await frontEnd()
    db = tempDatabase()
    server = await startServer({
      DATABASE_URL: db.databaseUrl,
      REDIS_URL: '',
      SAIKU_DATA_DIR: db.path,
      CORS_ORIGINS: `https://app.example.com,${listed.origin}`,
    })
    key = server.demoKey!
  })
  afterAll(async () => {
    await server?.stop()
    db?.remove()
    listed?.server.close()
    unlisted?.server.close()
  })

  /** A short-lived token for the page, exchanged here, by the page's own backend as it were: never in the page. */
  async function exchangedToken(): Promise<string> {
    const res = await fetch(`${server.url}/me/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ttlSeconds: 300 }),
    })
    expect(res.status).toBe(201)
    return ((await res.json()) as { accessToken: string }).accessToken
  }

  /** What the tenant has used this minute, read without spending anything (GET /me/usage costs 0). */
  async function minuteUsed(): Promise<number> {
    const res = await fetch(`${server.url}/me/usage`, { headers: { authorization: `Bearer ${key}` } })
    return ((await res.json()) as { minute: { used: number } }).minute.used
  }

  const preflight = (path: string, origin: string, method = 'GET') =>
    fetch(`${server.url}${path}`, {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': method,
        'access-control-request-headers': 'authorization,content-type',
      },
    })

  it('answers a listed origin’s preflight for /me/* with 204, Authorization allowed, Vary: Origin, no credentials', async () => {
    const res = await preflight('/me/tenant', listed.origin)
    expect(res.status).toBe(204)
    expect(res.headers.get('access-control-allow-origin')).toBe(listed.origin)
    expect(res.headers.get('access-control-allow-headers')?.toLowerCase().split(',')).toContain('authorization')
    expect(res.headers.get('access-control-allow-methods')).toBe('GET,POST,DELETE')
    expect(res.headers.get('access-control-max-age')).toBe('600')
    expect(res.headers.get('vary')).toMatch(/\borigin\b/i)
    expect(res.headers.get('access-control-allow-credentials')).toBeNull()
    expect(res.headers.get('www-authenticate')).toBeNull()
    const admitted = await fetch(`${server.url}/me/tenant`, {
      headers: { origin: listed.origin, authorization: `Bearer ${await exchangedToken()}` },
    })
    expect(admitted.status).toBe(200)
    expect(admitted.headers.get('access-control-allow-origin')).toBe(listed.origin)
    expect(admitted.headers.get('access-control-expose-headers')).toBe('RateLimit,RateLimit-Policy,Retry-After')
    expect(admitted.headers.get('vary')).toMatch(/\borigin\b/i)
    expect(admitted.headers.get('access-control-allow-credentials')).toBeNull()
    // A refusal too: the script reads the 401 rather than a network error.
    const refused = await fetch(`${server.url}/me/tenant`, {
      headers: { origin: listed.origin, authorization: 'Bearer sk_live_not-a-key' },
    })
    expect(refused.status).toBe(401)
    expect(refused.headers.get('access-control-allow-origin')).toBe(listed.origin)
  })

  it('sends no Access-Control-Allow-Origin from /sign-in, /api-keys or /me/tokens, to a preflight or a simple request', async () => {
    const exchanges = ['/me/tokens', '/ME/Tokens', '/me/tokens/']
    for (const path of ['/sign-in', '/api-keys', ...exchanges]) {
      const res = await preflight(path, listed.origin, 'POST')
      expect(res.headers.get('access-control-allow-origin'), `OPTIONS ${path}`).toBeNull()
      expect(res.headers.get('access-control-allow-credentials'), `OPTIONS ${path}`).toBeNull()
    }
    for (const path of ['/sign-in', '/api-keys']) {
      const res = await fetch(`${server.url}${path}`, { headers: { origin: listed.origin }, redirect: 'manual' })
      expect(res.status, `GET ${path}`).toBeLessThan(500)
      expect(res.headers.get('access-control-allow-origin'), `GET ${path}`).toBeNull()
    }
    const signIn = await fetch(`${server.url}/sign-in`, {
      method: 'POST',
      headers: { origin: listed.origin, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'email=a%40example.com&password=x',
      redirect: 'manual',
    })
    expect(signIn.headers.get('access-control-allow-origin')).toBeNull()
    // A real exchange from a listed origin: it works for the backend that sent it, and no script may read it.
    const exchanged = await fetch(`${server.url}/me/tokens`, {
      method: 'POST',
      headers: { origin: listed.origin, authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: '{}',
    })
    expect(exchanged.status).toBe(201)
    expect(exchanged.headers.get('access-control-allow-origin')).toBeNull()
  })

  it('gives an origin not in the list no Access-Control-Allow-Origin, on /me/* either', async () => {
    for (const origin of [unlisted.origin, 'https://app.example.com.evil.test', 'null']) {
      expect((await preflight('/me/tenant', origin)).headers.get('access-control-allow-origin'), origin).toBeNull()
      const res = await fetch(`${server.url}/me/tenant`, { headers: { origin, authorization: `Bearer ${key}` } })
      expect(res.status).toBe(200)
      expect(res.headers.get('access-control-allow-origin'), origin).toBeNull()
    }
  })

  describe.skipIf(!browserAvailable)('in Chromium', () => {
    it('a page on a listed origin calls /me/tenant with an exchanged token and reads RateLimit; the preflight is not counted', async () => {
      const token = await exchangedToken()
      const usedBefore = await minuteUsed()
      const browser = await launchBrowser()
      try {
        const page = await (await browser.context()).newPage()
        await page.goto(`${listed.origin}/`)
        const seen = await page.evaluate(
          async ({ api, token }) => {
            const res = await fetch(`${api}/me/tenant`, { headers: { Authorization: `Bearer ${token}` } })
            return {
              status: res.status,
              rateLimit: res.headers.get('RateLimit'),
              policy: res.headers.get('RateLimit-Policy'),
              body: (await res.json()) as { tenantSlug: string },
            }
          },
          { api: server.url, token },
        )
        expect(seen.status).toBe(200)
        expect(seen.body.tenantSlug).toBe('acme')
        expect(seen.rateLimit).toMatch(RATE_LIMIT)
        expect(seen.policy).toBe(STARTER_POLICY)
        // The browser sent a preflight first (Authorization is no safelisted header), answered by the CORS layer.
        await waitFor(
          () =>
            server.logs.some((line) => line.method === 'OPTIONS' && line.path === '/me/tenant' && line.status === 204),
          10_000,
        )
        // One request counted: the GET, not its preflight.
        expect((await minuteUsed()) - usedBefore).toBe(1)

        // The exchange answers no origin: the page cannot read it, whatever it sends.
        const exchange = await page.evaluate(async (api) => {
          try {
            await fetch(`${api}/me/tokens`, { method: 'POST', headers: { Authorization: 'Bearer sk_live_x' } })
            return 'read'
          } catch (error) {
            return (error as Error).name
          }
        }, server.url)
        expect(exchange).toBe('TypeError')
      } finally {
        await browser.close()
      }
    })

    it('a page on an origin not in the list cannot read /me/tenant', async () => {
      const token = await exchangedToken()
      const browser = await launchBrowser()
      try {
        const page = await (await browser.context()).newPage()
        await page.goto(`${unlisted.origin}/`)
        const outcome = await page.evaluate(
          async ({ api, token }) => {
            try {
              await fetch(`${api}/me/tenant`, { headers: { Authorization: `Bearer ${token}` } })
              return 'read'
            } catch (error) {
              return (error as Error).name
            }
          },
          { api: server.url, token },
        )
        expect(outcome).toBe('TypeError')
      } finally {
        await browser.close()
      }
    })
  })
})
