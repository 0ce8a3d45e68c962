// Regression: an async hook that rejected ended the process (exit code 1) at the first garbage key, and the
// next request got ECONNREFUSED. A real server process, so that Node's own unhandled-rejection policy is tested.
import { spawn } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { describe, expect, it, vi } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
// Starting a TypeScript server takes seconds on a loaded machine.
const STARTUP_TIMEOUT_MS = 45_000

describe('a server whose async hooks all reject', () => {
  for (const framework of ['express', 'koa']) {
    it(
      `stays up on ${framework}: a garbage key, a handler's throw, then the next request answered`,
      async () => {
        const child = spawn(
          process.execPath,
          ['--conditions=@saiku/source', '--import', 'tsx', 'test/fixtures/rejecting-hooks-server.ts'],
          { cwd: root, env: { ...process.env, SAIKU_FRAMEWORK: framework }, stdio: ['ignore', 'pipe', 'pipe'] },
        )
        let stdout = ''
        let stderr = ''
        child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
        const warnings = (): string[] => stderr.split('\n').filter((line) => line.includes('[SAIKU_HOOK_FAILED]'))
        try {
          await vi.waitFor(() => expect(stdout).toContain('\n'), { timeout: STARTUP_TIMEOUT_MS, interval: 50 })
          const { port, key } = JSON.parse(stdout) as { port: number; key: string }
          const get = (path: string, token: string): Promise<Response> =>
            fetch(`http://127.0.0.1:${port}${path}`, { headers: { authorization: `Bearer ${token}` } })

          const garbage = await get('/me/tenant', 'sk_live_garbage')
          expect(garbage.status).toBe(401)
          expect(await garbage.json()).toEqual({ error: 'unauthorized', message: 'API key missing or invalid.' })
          // The hooks reject a timer later: wait until the process either warned of it or died of it.
          await vi.waitFor(() => expect(warnings().length > 0 || child.exitCode !== null).toBe(true), {
            timeout: 10_000,
          })
          expect(child.exitCode).toBeNull()

          const boom = await get('/me/boom', key)
          expect(boom.status).toBe(500)
          expect(await boom.json()).toEqual({ error: 'internal_error', message: 'An unexpected error occurred.' })
          await vi.waitFor(() => expect(warnings().length >= 2 || child.exitCode !== null).toBe(true), {
            timeout: 10_000,
          })

          // More of the same: answered, and no warning said twice.
          for (let i = 0; i < 3; i++) {
            expect((await get('/me/tenant', 'sk_live_garbage')).status).toBe(401)
            expect((await get('/me/boom', key)).status).toBe(500)
          }
          const next = await get('/me/tenant', key)
          expect(next.status).toBe(200)
          expect(await next.json()).toMatchObject({ tenantSlug: 'acme' })
          // A grace for the last hooks' rejections (a timer each), then the process is alive and said each once.
          await sleep(500)
          expect(child.exitCode).toBeNull()
          expect(child.signalCode).toBeNull()
          expect(stderr).not.toContain('nhandled')
          expect(
            warnings()
              .map((line) => line.replace(/^\(node:\d+\) /, ''))
              .sort(),
          ).toEqual([
            '[SAIKU_HOOK_FAILED] Warning: Saiku auth: the onError hook threw or rejected, and was ignored: Error: log sink is down',
            '[SAIKU_HOOK_FAILED] Warning: Saiku auth: the saikuErrors().onError hook threw or rejected, and was ignored: Error: error reporter is down',
          ])
        } finally {
          child.kill()
          await exited
        }
      },
      STARTUP_TIMEOUT_MS + 30_000,
    )
  }
})
