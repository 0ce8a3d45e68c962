import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, readdirSync, rmSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { ESLint } from 'eslint'
import { describe, expect, it } from 'vitest'
import { DEFAULT_DATA_DIR } from '../examples/saiku-cloud-api/src/config.ts'

const root = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '')
const bin = (name: string) => join(root, 'node_modules/.bin', name)

/** Runs a command to its end; never rejects: the exit code and output are what the test reads. */
async function run(file: string, args: readonly string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(file, [...args], { cwd: root, timeout: 120_000 })
    return { code: 0, output: stdout + stderr }
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string }
    return { code: typeof failed.code === 'number' ? failed.code : 1, output: `${failed.stdout}${failed.stderr}` }
  }
}

/** What the format check, the linter and git make of these paths: each must leave every one alone. */
async function readers(paths: readonly string[]) {
  const eslint = new ESLint({ cwd: root })
  const checked = await Promise.all(
    paths.map(async (path) => {
      const info = await run(bin('prettier'), ['--file-info', path])
      return {
        path,
        prettier: (JSON.parse(info.output) as { ignored: boolean }).ignored ? 'ignored' : 'reads it',
        eslint: (await eslint.isPathIgnored(path)) ? 'ignored' : 'reads it',
      }
    }),
  )
  // check-ignore prints the paths git ignores, whether or not they exist yet.
  const ignoredByGit = (await run('git', ['check-ignore', ...paths])).output.split('\n')
  return checked.map((file) => ({ ...file, git: ignoredByGit.includes(file.path) ? 'ignored' : 'offers it' }))
}

const notIgnored = (checked: Awaited<ReturnType<typeof readers>>) =>
  checked.filter((file) => file.prettier !== 'ignored' || file.eslint !== 'ignored' || file.git !== 'ignored')

// `pnpm start`, then `pnpm test`: whatever a run writes inside the repository must not
// fail the format check or the lint, nor be offered to git.
describe('files written by runs', () => {
  it('pnpm start writes its data where the format check, the linter and git do not look', async () => {
    // A folder of its own inside the server's default data folder: the same ignore rules,
    // and a developer's own store and demo key are left alone.
    const data = join(DEFAULT_DATA_DIR, `test-start-${process.pid}`)
    mkdirSync(data, { recursive: true })
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PORT: '0',
      DATABASE_URL: `sqlite:${join(data, 'saiku.db')}`,
      SAIKU_DATA_DIR: data,
    }
    delete env.REDIS_URL
    delete env.NODE_OPTIONS
    const child = spawn('pnpm', ['--silent', 'start'], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    })
    const exited = once(child, 'exit')
    try {
      let output = ''
      await new Promise<void>((resolve, reject) => {
        const look = (chunk: Buffer) => {
          output += chunk.toString()
          if (output.includes('Dashboard: ')) resolve()
        }
        child.stdout.on('data', look)
        child.stderr.on('data', look)
        void exited.then(() => reject(new Error(`pnpm start exited:\n${output}`)))
      })
      process.kill(-child.pid!, 'SIGTERM')
      await exited

      const written = readdirSync(data).map((file) => relative(root, join(data, file)))
      expect(written).toEqual(expect.arrayContaining([expect.stringMatching(/jwt-signing-key\.json$/)]))
      expect(written).toEqual(expect.arrayContaining([expect.stringMatching(/saiku\.db$/)]))
      expect(notIgnored(await readers(written))).toEqual([])

      // What `pnpm test` runs next, on the folder the server wrote (the whole tree is `pnpm lint`'s to check).
      const format = await run(bin('prettier'), ['--check', '.'])
      expect(format.output).not.toContain(relative(root, data))
      const lint = await run(bin('eslint'), [
        '--max-warnings',
        '0',
        '--no-error-on-unmatched-pattern',
        relative(root, data),
      ])
      expect(lint).toEqual({ code: 0, output: '' })
    } finally {
      if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGTERM')
      await exited
      rmSync(data, { recursive: true, force: true })
    }
  }, 180_000)

  it('every other file a run writes is ignored too: builds, bench results, screenshots, coverage, the unpacked Node', async () => {
    const checked = await readers([
      'packages/core/dist/index.mjs',
      'examples/saiku-cloud-api/dist/server.mjs',
      'bench/.build/run.js',
      'bench/results/latest.json',
      '.cache/screenshots/dashboard/sign-in.png',
      '.cache/node/22/bin/node',
      'coverage/index.html',
      'test/.vitest/report.json',
      'examples/saiku-cloud-api/data/saiku.db-wal',
    ])
    expect(notIgnored(checked)).toEqual([])
    expect(checked).toHaveLength(9)
  })
})
