import { execFile } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))
const packages = ['core', 'express', 'koa', 'fastify', 'fetch', 'node', 'sqlite', 'postgres', 'redis']

// What a user of the published packages runs: no source condition, only dist/.
const usage = {
  core: `const k = core.mintApiKey(); if (!core.parseApiKey(k.key).ok) throw new Error('parse');
         const store = new core.MemoryKeyStore(); core.createAuthenticator(store);
         if (typeof core.describeKeyStoreConformance !== 'undefined') throw new Error('testing leaked into the main entry');`,
  express: `const mw = express.saikuAuth(new express.MemoryKeyStore()); if (typeof mw !== 'function' || mw.length !== 3) throw new Error('express');`,
  koa: `const mw = koa.saikuAuth(new koa.MemoryKeyStore()); if (typeof mw !== 'function' || mw.length !== 2) throw new Error('koa');`,
  // A fastify-plugin plugin: its metadata names the Fastify major it needs, so a wrong Fastify refuses it at registration.
  fastify: `const plugin = fastify.saikuAuth(new fastify.MemoryKeyStore()); if (typeof plugin !== 'function' || plugin[Symbol.for('plugin-meta')].fastify !== '5.x' || typeof plugin.authenticator.keys.create !== 'function') throw new Error('fastify'); plugin.authenticator.close();`,
  // A Fetch handler wrapper; its Hono entry (checked by attw and the CommonJS app below) is a subpath of its own.
  fetch: `const auth = fetch.saikuAuth(new fetch.MemoryKeyStore()); if (typeof auth !== 'function' || typeof fetch.withSaiku(auth, () => new Response()) !== 'function') throw new Error('fetch'); auth.authenticator.close();`,
  // A function of (req, res) that resolves, with the authenticator beside it.
  node: `const auth = node.saikuAuth(new node.MemoryKeyStore()); if (typeof auth !== 'function' || auth.length !== 2 || typeof node.withSaiku !== 'function') throw new Error('node'); auth.authenticator.close();`,
  sqlite: `const store = new sqlite.SqliteKeyStore(':memory:', { watchIntervalMs: 0 }); store.close();`,
  postgres: `if (typeof postgres.PostgresKeyStore !== 'function' || postgres.MIGRATIONS.length < 1) throw new Error('postgres');`,
  redis: `if (typeof redis.createRedisLimiter !== 'function' || !redis.CONSUME_SCRIPT.includes('HMGET')) throw new Error('redis');`,
}

function script(kind: 'cjs' | 'esm'): string {
  const load = packages
    .map((name) =>
      kind === 'cjs' ? `const ${name} = require('@saiku/${name}');` : `import * as ${name} from '@saiku/${name}';`,
    )
    .join('\n')
  return `${load}\n${Object.values(usage)
    .map((code) => `{ ${code} }`)
    .join('\n')}\nconsole.log('ok')`
}

describe('published packages', () => {
  it('are built (pnpm build)', () => {
    for (const name of packages) {
      for (const file of ['index.mjs', 'index.cjs', 'index.d.mts', 'index.d.cts']) {
        expect(existsSync(`${root}/packages/${name}/dist/${file}`), `packages/${name}/dist/${file}`).toBe(true)
      }
    }
  })

  it.each(['cjs', 'esm'] as const)('load with plain %s, without any build tool', async (kind) => {
    const { stdout } = await run(
      process.execPath,
      [`--input-type=${kind === 'cjs' ? 'commonjs' : 'module'}`, '-e', script(kind)],
      { cwd: root },
    )
    expect(stdout.trim()).toBe('ok')
  })

  it.each(packages)(
    '@saiku/%s has types that resolve for require and import (attw, publint)',
    async (name) => {
      const cwd = `${root}/packages/${name}`
      // Every resolution, node10 too: typesVersions shows it the subpath entries.
      const attw = await run(`${root}/node_modules/.bin/attw`, ['--pack', '.', '--format', 'json'], { cwd })
      const report = JSON.parse(attw.stdout) as { analysis: { problems: { resolutionKind?: string }[] } }
      expect(report.analysis.problems).toEqual([])
      const publint = await run(`${root}/node_modules/.bin/publint`, ['--strict'], { cwd })
      expect(publint.stdout).not.toMatch(/error|warning|suggestion/i)
    },
    60_000,
  )

  // attw reads how each entry resolves, not whether its declarations compile: a CommonJS app with
  // skipLibCheck: false compiles them, and an ESM-only import in a .d.cts is TS1479 there.
  describe('in a CommonJS TypeScript app, with skipLibCheck: false', () => {
    const tsc7 = `${root}/node_modules/.bin/tsc`
    // TypeScript 7 dropped moduleResolution node10; TypeScript 6 (the linter's) still has it.
    const tsc6 = createRequire(createRequire(import.meta.url).resolve('typescript-eslint')).resolve(
      'typescript/bin/tsc',
    )
    let app: string
    beforeAll(() => {
      app = mkdtempSync(join(tmpdir(), 'saiku-types-cjs-'))
      cpSync(`${root}/test/fixtures/types-cjs`, app, { recursive: true })
      // The packages as dist/ gives them (their source condition is no TypeScript condition), and @types/node.
      mkdirSync(join(app, 'node_modules/@saiku'), { recursive: true })
      for (const name of packages) symlinkSync(`${root}/packages/${name}`, join(app, 'node_modules/@saiku', name))
      symlinkSync(`${root}/node_modules/@types`, join(app, 'node_modules/@types'))
    })
    afterAll(() => rmSync(app, { recursive: true, force: true }))

    it.each([
      ['module: node16 (TypeScript 7)', tsc7, 'tsconfig.node16.json'],
      ['module: node16 (TypeScript 6)', process.execPath, 'tsconfig.node16.json'],
      ['moduleResolution: node10 (TypeScript 6)', process.execPath, 'tsconfig.node10.json'],
    ])(
      'type-checks every entry under %s',
      async (_name, command, config) => {
        const args = command === process.execPath ? [tsc6, '-p', config] : ['-p', config]
        const result = await run(command, args, { cwd: app }).then(
          () => '',
          (error: Error & { stdout?: string }) => error.stdout ?? error.message,
        )
        expect(result).toBe('')
      },
      60_000,
    )
  })
})
