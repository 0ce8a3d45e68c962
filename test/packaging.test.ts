import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))
const packages = ['core', 'express', 'koa', 'fastify', 'sqlite', 'postgres', 'redis']

// What a user of the published packages runs: no source condition, only dist/.
const usage = {
  core: `const k = core.mintApiKey(); if (!core.parseApiKey(k.key).ok) throw new Error('parse');
         const store = new core.MemoryKeyStore(); core.createAuthenticator(store);
         if (typeof core.describeKeyStoreConformance !== 'undefined') throw new Error('testing leaked into the main entry');`,
  express: `const mw = express.saikuAuth(new express.MemoryKeyStore()); if (typeof mw !== 'function' || mw.length !== 3) throw new Error('express');`,
  koa: `const mw = koa.saikuAuth(new koa.MemoryKeyStore()); if (typeof mw !== 'function' || mw.length !== 2) throw new Error('koa');`,
  // A fastify-plugin plugin: its metadata names the Fastify major it needs, so a wrong Fastify refuses it at registration.
  fastify: `const plugin = fastify.saikuAuth(new fastify.MemoryKeyStore()); if (typeof plugin !== 'function' || plugin[Symbol.for('plugin-meta')].fastify !== '5.x' || typeof plugin.authenticator.keys.create !== 'function') throw new Error('fastify'); plugin.authenticator.close();`,
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
      const attw = await run(
        `${root}/node_modules/.bin/attw`,
        ['--pack', '.', '--profile', 'node16', '--format', 'json'],
        { cwd },
      )
      const report = JSON.parse(attw.stdout) as { analysis: { problems: { resolutionKind?: string }[] } }
      // node10 resolution cannot see subpath exports; every Node ≥ 20 resolver can.
      expect(report.analysis.problems.filter((problem) => problem.resolutionKind !== 'node10')).toEqual([])
      const publint = await run(`${root}/node_modules/.bin/publint`, ['--strict'], { cwd })
      expect(publint.stdout).not.toMatch(/error|warning|suggestion/i)
    },
    60_000,
  )
})
