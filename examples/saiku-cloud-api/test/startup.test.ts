import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { exampleDir } from './helpers.js'

/** Makes a file unwritable for this process: a mode for most users, the immutable flag for root (who ignores modes). */
function makeReadOnly(file: string): () => void {
  chmodSync(file, 0o444)
  if (process.getuid?.() !== 0) return () => chmodSync(file, 0o644)
  const locked = spawnSync('chattr', ['+i', file], { encoding: 'utf8' })
  if (locked.status !== 0) throw new Error(`running as root needs chattr to make ${file} read-only: ${locked.stderr}`)
  return () => {
    spawnSync('chattr', ['-i', file])
    chmodSync(file, 0o644)
  }
}

describe('start-up on a read-only SQLite file', () => {
  it('exits with one clear line saying what is wrong and what to do, never a stack trace', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'saiku-ro-'))
    const file = join(dir, 'saiku.db')
    const run = () => {
      const child = spawn(process.execPath, ['--conditions=@saiku/source', '--import', 'tsx', 'src/server.ts'], {
        cwd: exampleDir,
        env: { ...process.env, PORT: '0', DATABASE_URL: `sqlite:${file}` },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let stderr = ''
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
      return { child, stderr: () => stderr }
    }
    // A first start creates the file; stop it once it listens.
    const first = run()
    let out = ''
    first.child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()))
    while (!out.includes('"listening"')) await once(first.child.stdout, 'data')
    first.child.kill('SIGTERM')
    await once(first.child, 'exit')

    const unlock = makeReadOnly(file)
    try {
      const second = run()
      const [code] = (await once(second.child, 'exit')) as [number]
      expect(code).toBe(1)
      const lines = second.stderr().trim().split('\n')
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatch(
        /^saiku: DATABASE_URL: cannot write the SQLite file .*saiku\.db \(SQLITE_READONLY\)\. .*writable/,
      )
      expect(second.stderr()).not.toMatch(/\n\s+at /)
    } finally {
      unlock()
      rmSync(dir, { recursive: true, force: true })
    }
  }, 30_000)
})
