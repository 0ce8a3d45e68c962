import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'

const runner = fileURLToPath(new URL('../scripts/test.mjs', import.meta.url))
const folders: string[] = []
afterEach(() => folders.splice(0).forEach((dir) => rmSync(dir, { recursive: true, force: true })))

/** Runs scripts/test.mjs in a package whose stage scripts only say they ran (or fail, as given). */
async function runStages(scripts: Record<string, string>, args: readonly string[] = []) {
  const dir = mkdtempSync(join(tmpdir(), 'saiku-test-stages-'))
  folders.push(dir)
  const stage = (name: string) => `echo ran-${name}`
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({
      name: 'stages',
      private: true,
      scripts: {
        build: stage('build'),
        typecheck: stage('typecheck'),
        'docs:api': stage('docs'),
        lint: stage('lint'),
        'format:check': stage('format'),
        'test:vitest': stage('tests'),
        ...scripts,
      },
    }),
  )
  const child = spawn(process.execPath, [runner, ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const [code] = await once(child, 'exit')
  const lines = output.trim().split('\n')
  return { code, output, lastLine: lines.at(-1) }
}

describe('pnpm test (scripts/test.mjs)', () => {
  it('names the stage that failed, and what it ran, in its last line, and runs no stage after it', async () => {
    const result = await runStages({ lint: 'echo ran-lint && exit 3' })
    expect(result.code).toBe(3)
    expect(result.lastLine).toBe('pnpm test: failed at lint (echo ran-lint && exit 3)')
    expect(result.output).toContain('ran-typecheck')
    expect(result.output).toContain('ran-docs')
    expect(result.output).not.toContain('ran-format')
    expect(result.output).not.toContain('ran-tests')
  }, 60_000)

  it.each([
    ['build', 'build'],
    ['types', 'typecheck'],
    ['docs', 'docs:api'],
    ['format', 'format:check'],
    ['tests', 'test:vitest'],
  ])(
    'names %s when its script (%s) fails',
    async (stage, script) => {
      const result = await runStages({ [script]: 'exit 1' })
      expect(result.code).toBe(1)
      expect(result.lastLine).toBe(`pnpm test: failed at ${stage} (exit 1)`)
    },
    60_000,
  )

  it('passes its arguments to the test stage, and says it passed in its last line', async () => {
    const result = await runStages({}, ['--', 'test/readme.test.ts'])
    expect(result.code).toBe(0)
    expect(result.output).toContain('ran-tests test/readme.test.ts')
    expect(result.lastLine).toMatch(/^pnpm test: passed \(build, types, docs, lint, format, tests\) in \d+ s$/)
  }, 60_000)
})

describe('package.json', () => {
  it('runs its stages through scripts/test.mjs', async () => {
    const { readFile } = await import('node:fs/promises')
    const manifest = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'))
    expect(manifest.scripts.test).toBe('node scripts/test.mjs')
    expect(manifest.scripts['test:vitest']).toBe('vitest run')
  })
})
