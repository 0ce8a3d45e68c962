// examples/nextjs-route as a Next.js user runs it: `next build`, then `next start` on 127.0.0.1,
// with telemetry off and nothing fetched (no fonts, the SWC binary from its registry package),
// then GET /me/tenant with the demo key it printed and with no key.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { freePort } from '@saiku/test-support/services'

const root = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '')
const example = `${root}/examples/nextjs-route`

function env(port: number): NodeJS.ProcessEnv {
  const vars: NodeJS.ProcessEnv = { ...process.env, NEXT_TELEMETRY_DISABLED: '1', PORT: String(port), NO_COLOR: '1' }
  // The workspace's source condition: Next.js bundles the built packages, as an installed app's.
  delete vars.NODE_OPTIONS
  return vars
}

/** Runs `pnpm --silent <script>` in the example; resolves with its output once `done` accepts it (or it exits 0). */
function run(
  script: string,
  port: number,
  children: ChildProcess[],
  done: (output: string) => boolean,
  timeoutMs: number,
): Promise<string> {
  const child = spawn('pnpm', ['--silent', script], {
    cwd: example,
    env: env(port),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  children.push(child)
  let output = ''
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`pnpm ${script}: not done in ${timeoutMs} ms:\n${output}`)),
      timeoutMs,
    )
    const look = (chunk: Buffer) => {
      output += chunk.toString()
      if (done(output)) {
        clearTimeout(timer)
        resolve(output)
      }
    }
    child.stdout.on('data', look)
    child.stderr.on('data', look)
    child.once('exit', (code) => {
      clearTimeout(timer)
      if (code === 0) resolve(output)
      else reject(new Error(`pnpm ${script} exited (${String(code)}):\n${output}`))
    })
  })
}

describe('examples/nextjs-route', () => {
  const children: ChildProcess[] = []
  afterAll(async () => {
    for (const child of children) {
      if (child.exitCode !== null || child.signalCode !== null) continue
      const exited = once(child, 'exit')
      process.kill(-child.pid!, 'SIGTERM')
      await exited
    }
  })

  it('builds offline and serves GET /me/tenant: 200 with the demo key, the JSON 401 without one', async () => {
    const manifest = JSON.parse(readFileSync(`${example}/package.json`, 'utf8')) as { scripts: Record<string, string> }
    for (const script of ['build', 'start']) expect(manifest.scripts[script]).toMatch(/^NEXT_TELEMETRY_DISABLED=1 /)
    expect(existsSync(`${root}/packages/fetch/dist/index.mjs`), 'run pnpm build first').toBe(true)
    const port = await freePort()
    const built = await run('build', port, children, () => false, 300_000)
    expect(built).toMatch(/ƒ \/me\/tenant/)

    const started = await run('start', port, children, (output) => /Bearer sk_live_\w+"/.test(output), 60_000)
    const [, url, key] =
      /Try: curl (http:\/\/127\.0\.0\.1:\d+)\/me\/tenant -H "Authorization: Bearer (sk_live_\w+)"/.exec(started)!
    expect(url).toBe(`http://127.0.0.1:${port}`)
    const admitted = await fetch(`${url}/me/tenant`, { headers: { authorization: `Bearer ${key}` } })
    expect(admitted.status).toBe(200)
    expect(await admitted.json()).toEqual({
      tenantId: '81e301f2-5d0c-4c4e-9a57-3f0e7f1d2c10',
      tenantSlug: 'acme',
      tier: 'starter',
      connectionName: 'production-warehouse',
    })
    expect(admitted.headers.get('ratelimit-policy')).toBe('"minute";q=60;w=60, "hour";q=1000;w=3600')
    expect(admitted.headers.get('ratelimit')).toMatch(/^"minute";r=59;t=\d+, "hour";r=999;t=\d+$/)

    const refused = await fetch(`${url}/me/tenant`)
    expect(refused.status).toBe(401)
    expect(refused.headers.get('content-type')).toMatch(/^application\/json/)
    expect(refused.headers.get('www-authenticate')).toBe('Bearer realm="saiku"')
    expect(await refused.json()).toEqual({ error: 'unauthorized', message: 'API key missing or invalid.' })
  }, 420_000)
})
