import { execFile, execFileSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const quickStart = () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('## Try the reference server'))
  return section.slice(section.indexOf('```sh\n') + 6, section.indexOf('\n```', section.indexOf('```sh\n')))
}

describe("the README's set-up of the reference server", () => {
  it('checks Node first, with the command that unpacks a supported one, and names corepack beside npm', () => {
    const lines = quickStart().split('\n')
    expect(lines[0]).toMatch(/^node --version\b.*node scripts\/node-runtime\.mjs 22/)
    expect(lines.find((line) => line.includes('npm install -g pnpm@'))).toContain('corepack enable')
  })

  // pnpm checks node_modules against the lockfile before each script it runs, and in a clone with no
  // node_modules at all it warns that they are "out of sync": the set-up must not start through a script.
  it('sets up a fresh clone without the "node_modules out of sync" warning', async () => {
    const setUp = quickStart()
      .split('\n')
      .find((line) => line.includes('# set-up'))!
      .replace(/#.*$/, '')
      .split('&&')
      .at(-1)!
      .trim()
    const [command, ...args] = setUp.split(/\s+/)
    const clone = mkdtempSync(join(tmpdir(), 'saiku-fresh-clone-'))
    try {
      // What pnpm reads to install: the manifests, the lockfile, the workspace and the set-up scripts.
      const tracked = execFileSync('git', ['ls-files'], { cwd: root, encoding: 'utf8' }).split('\n')
      const needed = tracked.filter((file) =>
        /(^|\/)package\.json$|^pnpm-(lock|workspace)\.yaml$|^\.pnpmfile\.cjs$|^scripts\//.test(file),
      )
      for (const file of needed) {
        mkdirSync(dirname(join(clone, file)), { recursive: true })
        cpSync(join(root, file), join(clone, file))
      }
      // Offline, on an empty store: the install stops at its first download, after pnpm has said what it says first.
      // As typed at a terminal: none of the settings pnpm passes to the scripts it runs (it turns its own check off there).
      const env = Object.fromEntries(
        Object.entries(process.env).filter(([name]) => !/^(npm|pnpm)_/i.test(name) && name !== 'CI'),
      )
      Object.assign(env, { pnpm_config_offline: 'true', pnpm_config_store_dir: join(clone, '.store') })
      const output = await promisify(execFile)(command!, args, { cwd: clone, env, timeout: 120_000 }).then(
        ({ stdout, stderr }) => stdout + stderr,
        (error: { stdout?: string; stderr?: string }) => `${error.stdout}${error.stderr}`,
      )
      expect(output).toMatch(/Scope: all \d+ workspace projects/)
      expect(output).not.toMatch(/out of sync/i)
    } finally {
      rmSync(clone, { recursive: true, force: true })
    }
  }, 150_000)
})
