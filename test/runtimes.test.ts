// The Fetch example's handler under Bun and Deno (and Node beside them, the same cases), each
// a child process on a free loopback port, driven over HTTP from here: statuses, bodies, both
// RateLimit fields, Retry-After, WWW-Authenticate, two Authorization headers, unknown and
// revoked keys, a subscription refused and its exempt path. The binaries come from the
// `bun` and `deno` registry packages (test/runtimes); a missing one fails the run, never
// skips it. Deno runs on the installed node_modules with nothing fetched and no update check.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { request, type IncomingMessage } from 'node:http'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '')
const runtimesDir = `${root}/test/runtimes`
const bin = (name: string) => `${runtimesDir}/node_modules/.bin/${name}`

/** Deno's flags: the installed node_modules, only what is cached (nothing is), no remote module, loopback only. */
export const DENO_RUN = [
  'run',
  '--node-modules-dir=manual',
  '--cached-only',
  '--no-remote',
  '--allow-net=127.0.0.1',
  '--allow-env',
  '--allow-read',
] as const

function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DENO_NO_UPDATE_CHECK: '1',
    NO_COLOR: '1',
    PORT: '0',
    PATH: `${runtimesDir}/node_modules/.bin:${process.env.PATH ?? ''}`,
  }
  // The workspace's source condition: the runtimes run the built packages, as an installed app does.
  delete env.NODE_OPTIONS
  return env
}

/** Spawns `command` in `cwd` and waits (bounded) for the first line of its output that `match` accepts. */
async function startChild<T>(
  command: readonly string[],
  cwd: string,
  match: (output: string) => T | undefined,
  children: ChildProcess[],
): Promise<T> {
  const child = spawn(command[0]!, command.slice(1), {
    cwd,
    env: childEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  children.push(child)
  let output = ''
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${command.join(' ')} did not start in 60 s:\n${output}`)), 60_000)
    const look = (chunk: Buffer) => {
      output += chunk.toString()
      const found = match(output)
      if (found !== undefined) {
        clearTimeout(timer)
        resolve(found)
      }
    }
    child.stdout.on('data', look)
    child.stderr.on('data', look)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${command.join(' ')} exited (${String(code)}):\n${output}`))
    })
  })
}

async function stopAll(children: ChildProcess[]): Promise<void> {
  for (const child of children) {
    if (child.exitCode !== null || child.signalCode !== null) continue
    const exited = once(child, 'exit')
    process.kill(-child.pid!, 'SIGTERM')
    await exited
  }
}

interface Served {
  readonly runtime: string
  readonly port: number
  readonly keys: { demo: string; revoked: string; tight: string; late: string; unknown: string }
}

/** A GET with raw header lines, sent exactly as given (fetch would join two Authorization headers into one). */
async function rawGet(port: number, path: string, rawHeaders: string[]) {
  const req = request({ host: '127.0.0.1', port, path, headers: ['Host', `127.0.0.1:${port}`, ...rawHeaders] })
  req.end()
  const [res] = (await once(req, 'response')) as [IncomingMessage]
  let body = ''
  for await (const chunk of res) body += (chunk as Buffer).toString()
  return { status: res.statusCode!, headers: res.headers, body: JSON.parse(body) as unknown }
}

const TENANT = {
  tenantId: '81e301f2-5d0c-4c4e-9a57-3f0e7f1d2c10',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'production-warehouse',
}
const POLICY = '"minute";q=60;w=60, "hour";q=1000;w=3600'
const UNAUTHORIZED = { error: 'unauthorized', message: 'API key missing or invalid.' }
const INVALID_TOKEN =
  'Bearer realm="saiku", error="invalid_token", error_description="The API key is malformed, unknown, expired or revoked"'

const runtimes = [
  { name: 'Bun', command: [bin('bun'), 'serve.ts'], binary: bin('bun') },
  { name: 'Deno', command: [bin('deno'), ...DENO_RUN, 'serve.ts'], binary: bin('deno') },
  // The same cases on Node: what the other two must answer alike.
  { name: 'Node', command: [process.execPath, '--import', 'tsx', 'serve.ts'], binary: process.execPath },
] as const

describe.each(runtimes)('the Fetch example on $name', ({ name, command, binary }) => {
  const children: ChildProcess[] = []
  let served: Served
  let base: string
  const get = (path: string, authorization?: string) =>
    fetch(`${base}${path}`, authorization === undefined ? {} : { headers: { authorization } })

  beforeAll(async () => {
    // Installed by `pnpm install` from the registry packages (allowBuilds lets their install steps run).
    expect(existsSync(binary), `${binary} is missing: run pnpm install at the root`).toBe(true)
    expect(existsSync(`${root}/packages/fetch/dist/index.mjs`), 'run pnpm build first').toBe(true)
    served = await startChild(
      command,
      runtimesDir,
      (output) => {
        const line = output.split('\n').find((text) => text.startsWith('{"runtime"'))
        return line === undefined ? undefined : (JSON.parse(line) as Served)
      },
      children,
    )
    base = `http://127.0.0.1:${served.port}`
  }, 90_000)
  afterAll(() => stopAll(children))

  it('runs on that runtime', () => {
    expect(served.runtime.toLowerCase()).toMatch(new RegExp(`^${name.toLowerCase()} v?\\d+\\.\\d+\\.\\d+`))
  })

  it('admits the demo key with its tenant and both RateLimit fields', async () => {
    const response = await get('/me/tenant', `Bearer ${served.keys.demo}`)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toMatch(/^application\/json/)
    expect(response.headers.get('ratelimit-policy')).toBe(POLICY)
    expect(response.headers.get('ratelimit')).toMatch(/^"minute";r=59;t=\d+, "hour";r=999;t=\d+$/)
    expect(await response.json()).toEqual(TENANT)
  })

  it('refuses no key with 401 JSON and a bare challenge', async () => {
    const response = await get('/me/tenant')
    expect(response.status).toBe(401)
    expect(response.headers.get('www-authenticate')).toBe('Bearer realm="saiku"')
    expect(response.headers.get('cache-control')).toBe('no-store')
    expect(response.headers.get('ratelimit')).toBeNull()
    expect(await response.json()).toEqual(UNAUTHORIZED)
  })

  it('refuses a garbage token, an unknown key and a revoked key with 401 invalid_token, never echoing the key', async () => {
    for (const token of ['nope', served.keys.unknown, served.keys.revoked]) {
      const response = await get('/me/tenant', `Bearer ${token}`)
      expect(response.status, token).toBe(401)
      expect(response.headers.get('www-authenticate'), token).toBe(INVALID_TOKEN)
      const body = await response.text()
      expect(JSON.parse(body), token).toEqual(UNAUTHORIZED)
      expect(body).not.toContain(token)
    }
  })

  it('refuses two Authorization headers, and credentials joined by a comma, with 400', async () => {
    const demo = `Bearer ${served.keys.demo}`
    const twice = await rawGet(served.port, '/me/tenant', ['Authorization', demo, 'Authorization', demo])
    const joined = await get('/me/tenant', `${demo}, ${demo}`)
    for (const [status, headers, body] of [
      [twice.status, (name: string) => twice.headers[name], twice.body],
      [joined.status, (name: string) => joined.headers.get(name), await joined.json()],
    ] as const) {
      expect(status).toBe(400)
      expect(headers('www-authenticate')).toMatch(/^Bearer realm="saiku", error="invalid_request"/)
      expect(body).toEqual({
        error: 'invalid_request',
        message: 'Send exactly one API key, in one Authorization header: "Authorization: Bearer <key>".',
      })
    }
  })

  it('counts a tenant’s requests down to 429 with Retry-After and both fields', async () => {
    const authorization = `Bearer ${served.keys.tight}`
    const left: string[] = []
    for (let i = 0; i < 3; i++) {
      const response = await get('/me/tenant', authorization)
      expect(response.status).toBe(200)
      await response.arrayBuffer()
      left.push(response.headers.get('ratelimit')!.replace(/;t=\d+/g, ''))
    }
    expect(left).toEqual(['"minute";r=2, "hour";r=99', '"minute";r=1, "hour";r=98', '"minute";r=0, "hour";r=97'])
    const refused = await get('/me/tenant', authorization)
    expect(refused.status).toBe(429)
    const retryAfter = Number(refused.headers.get('retry-after'))
    expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60).toBe(true)
    expect(refused.headers.get('ratelimit-policy')).toBe('"minute";q=3;w=60, "hour";q=100;w=3600')
    expect(refused.headers.get('ratelimit')).toMatch(/^"minute";r=0;t=\d+, "hour";r=97;t=\d+$/)
    expect(((await refused.json()) as { error: string }).error).toBe('rate_limited')
  })

  it('refuses a past-due subscription with 402, but not on its exempt path', async () => {
    const authorization = `Bearer ${served.keys.late}`
    const refused = await get('/me/tenant', authorization)
    expect(refused.status).toBe(402)
    expect(((await refused.json()) as { error: string }).error).toBe('payment_required')
    // /me/billing is exempt: admitted, and the handler answers it (no such route) with the JSON 404.
    const exempt = await get('/me/billing', authorization)
    expect(exempt.status).toBe(404)
    expect(exempt.headers.get('ratelimit-policy')).toBe(POLICY)
    expect(await exempt.json()).toEqual({ error: 'not_found', message: 'Resource does not exist.' })
  })

  it('answers what the handler throws as JSON, with the admitted request’s fields', async () => {
    const response = await get('/me/nowhere', `Bearer ${served.keys.demo}`)
    expect(response.status).toBe(404)
    expect(response.headers.get('ratelimit-policy')).toBe(POLICY)
    expect(response.headers.get('ratelimit')).toMatch(/^"minute";r=\d+;t=\d+, "hour";r=\d+;t=\d+$/)
    expect(await response.json()).toEqual({ error: 'not_found', message: 'Resource does not exist.' })
  })
})

// The example's own entries, started by its own scripts as a user runs them: each prints its key and serves it.
describe.each([
  { name: 'Bun', script: 'start:bun' },
  { name: 'Deno', script: 'start:deno' },
  { name: 'Node', script: 'start' },
])('examples/fetch-basic: pnpm $script', ({ name, script }) => {
  const children: ChildProcess[] = []
  afterAll(() => stopAll(children))

  it(`starts on ${name}, prints its demo key and serves GET /me/tenant`, async () => {
    const manifest = JSON.parse(readFileSync(`${root}/examples/fetch-basic/package.json`, 'utf8')) as {
      scripts: Record<string, string>
    }
    if (name === 'Deno') {
      // Offline and on the installed packages, as the runtime tests run it.
      expect(manifest.scripts[script]).toContain('DENO_NO_UPDATE_CHECK=1')
      for (const flag of DENO_RUN) expect(manifest.scripts[script]).toContain(flag)
    }
    const [, url, key] = await startChild(
      ['pnpm', '--silent', script],
      `${root}/examples/fetch-basic`,
      (output) =>
        /Try: curl (http:\/\/127\.0\.0\.1:\d+)\/me\/tenant -H "Authorization: Bearer (sk_live_\w+)"/.exec(output) ??
        undefined,
      children,
    )
    const response = await fetch(`${url!}/me/tenant`, { headers: { authorization: `Bearer ${key!}` } })
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual(TENANT)
    const refused = await fetch(`${url!}/me/tenant`)
    expect(refused.status).toBe(401)
  }, 90_000)
})
