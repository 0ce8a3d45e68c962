import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { describe, expect, it } from 'vitest'
import { exampleDir, startServer, tempDatabase } from './helpers.js'

// The demo key and the demo member's password are shown once, at the start that
// creates them, and only their digests are kept: a start that creates them and then
// cannot listen would lose them for good.
describe('the first start with its port taken', () => {
  it('creates no demo, so the next start that listens creates and shows it', async () => {
    const db = tempDatabase()
    const taken = createServer()
    taken.listen(0, '127.0.0.1')
    await once(taken, 'listening')
    const address = taken.address()
    const port = typeof address === 'object' && address !== null ? address.port : 0
    try {
      const env = { DATABASE_URL: db.databaseUrl, SAIKU_DATA_DIR: db.path, REDIS_URL: '' }
      const first = spawn(process.execPath, ['--conditions=@saiku/source', '--import', 'tsx', 'src/server.ts'], {
        cwd: exampleDir,
        env: { ...process.env, ...env, PORT: String(port) },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let output = ''
      first.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
      first.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
      const [code] = await once(first, 'exit')
      expect(code).toBe(1)
      expect(output).toMatch(/EADDRINUSE|port is in use/)
      expect(output).not.toMatch(/sk_live_\w+/)
      expect(output).not.toContain('password:')

      const second = await startServer(env)
      try {
        expect(second.demoKey).toMatch(/^sk_live_\w+$/)
        expect(second.stderr()).toMatch(/^ {2}password: \S+$/m)
        const response = await fetch(`${second.url}/me/tenant`, {
          headers: { authorization: `Bearer ${second.demoKey}` },
        })
        expect(response.status).toBe(200)
        expect(((await response.json()) as { tenantSlug: string }).tenantSlug).toBe('acme')
      } finally {
        await second.stop()
      }
    } finally {
      taken.close()
      db.remove()
    }
  }, 90_000)
})
