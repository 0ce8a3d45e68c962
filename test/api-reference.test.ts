import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'

// `pnpm docs:api` (scripts/docs-api.mjs) run against a workspace of its own, so each kind
// of broken comment is seen to fail the stage. Two packages, as in the repository: TypeDoc
// alone checks exports only in the package of a lone entry point.
const script = fileURLToPath(new URL('../scripts/docs-api.mjs', import.meta.url))
const folders: string[] = []
afterEach(() => folders.splice(0).forEach((dir) => rmSync(dir, { recursive: true, force: true })))

const CLEAN = `/** What the demo counts. */
export interface Count {
  readonly value: number
}

/** Counts once; see {@link Count}. */
export function count(): Count {
  return { value: 1 }
}
`

interface Workspace {
  /** File path (below the workspace) → content. */
  readonly files: Record<string, string>
  /** The demo package's `exports`. */
  readonly exports?: Record<string, unknown>
}

async function runDocsApi({ files, exports }: Workspace) {
  const dir = mkdtempSync(join(tmpdir(), 'saiku-docs-api-'))
  folders.push(dir)
  const write = (path: string, content: string) => {
    mkdirSync(dirname(join(dir, path)), { recursive: true })
    writeFileSync(join(dir, path), content)
  }
  write('package.json', JSON.stringify({ name: 'docs-api-fixture', private: true }))
  write(
    'tsconfig.docs.json',
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        noEmit: true,
      },
      include: ['packages/*/src'],
    }),
  )
  write(
    'packages/demo/package.json',
    JSON.stringify({
      name: '@fixture/demo',
      type: 'module',
      exports: exports ?? { '.': { '@saiku/source': './src/index.ts' }, './package.json': './package.json' },
    }),
  )
  write(
    'packages/other/package.json',
    JSON.stringify({ name: '@fixture/other', type: 'module', exports: { '.': { '@saiku/source': './src/index.ts' } } }),
  )
  write('packages/other/src/index.ts', '/** Another package beside the demo. */\nexport const OTHER: number = 1\n')
  for (const [path, content] of Object.entries(files)) write(path, content)

  const child = spawn(process.execPath, [script], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const [code] = (await once(child, 'exit')) as [number | null]
  // eslint-disable-next-line no-control-regex
  const plain = output.replace(/\u001b\[[0-9;]*m/g, '')
  return { code, output: plain, lastLine: plain.trim().split('\n').at(-1), dir }
}

describe('pnpm docs:api', () => {
  it('writes the reference of every entry in exports, each module named as it is imported', async () => {
    const result = await runDocsApi({
      files: { 'packages/demo/src/index.ts': CLEAN, 'packages/demo/src/extra.ts': 'export const EXTRA: number = 1\n' },
      exports: {
        '.': { '@saiku/source': './src/index.ts' },
        './extra': { '@saiku/source': './src/extra.ts' },
        './package.json': './package.json',
      },
    })
    expect(result.output).not.toContain('[warning]')
    expect(result.code).toBe(0)
    expect(result.lastLine).toBe('docs:api: 3 entries of 2 packages written to .cache/api-reference/index.html')
    expect(existsSync(join(result.dir, '.cache/api-reference/modules/_fixture_demo.html'))).toBe(true)
    expect(existsSync(join(result.dir, '.cache/api-reference/modules/_fixture_demo_extra.html'))).toBe(true)
    expect(existsSync(join(result.dir, '.cache/api-reference/modules/_fixture_other.html'))).toBe(true)
  }, 120_000)

  it('fails on a {@link} that resolves to nothing, and on a type the API names but no entry exports', async () => {
    const broken = CLEAN.replace('{@link Count}', '{@link Counted}').replace(
      'export interface Count',
      'interface Count',
    )
    const result = await runDocsApi({ files: { 'packages/demo/src/index.ts': broken } })
    expect(result.code).toBe(1)
    expect(result.output).toContain('Failed to resolve link to "Counted"')
    expect(result.output).toMatch(
      /Count, defined in .*, is referenced by .*count.* but not included in the documentation/,
    )
    expect(result.lastLine).toBe('docs:api: the TSDoc has the problems above')
  }, 120_000)

  it('fails on an entry in exports whose source is missing', async () => {
    const result = await runDocsApi({
      files: { 'packages/demo/src/index.ts': CLEAN },
      exports: { '.': { '@saiku/source': './src/index.ts' }, './gone': { '@saiku/source': './src/gone.ts' } },
    })
    expect(result.code).toBe(1)
    expect(result.lastLine).toBe('docs:api: @fixture/demo/gone: its source packages/demo/src/gone.ts does not exist')
  }, 120_000)

  it('fails on an entry in exports with no source to document it from', async () => {
    const result = await runDocsApi({
      files: { 'packages/demo/src/index.ts': CLEAN },
      exports: { '.': { import: './dist/index.mjs' } },
    })
    expect(result.code).toBe(1)
    expect(result.lastLine).toBe(
      'docs:api: @fixture/demo: exports["."] has no "@saiku/source" condition to document @fixture/demo from',
    )
  }, 120_000)
})
