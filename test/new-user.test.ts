// What a new user does: every package packed as it would be published, installed
// into fresh apps with npm and with pnpm by the READMEs' own install lines, the
// READMEs' snippets type-checked (strict) and run, and each example copied out of
// the repository, installed from the tarballs, started and called.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  writeFileSync,
} from 'node:fs'
import { once } from 'node:events'
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort, postgresUrl } from '@saiku/test-support/services'

const execFileAsync = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))
const tsc = join(root, 'node_modules/.bin/tsc')
const PACKAGES = ['core', 'express', 'koa', 'fastify', 'fetch', 'node', 'sqlite', 'postgres', 'redis'] as const
type PackageName = (typeof PACKAGES)[number]
const redisUrl = process.env.REDIS_URL || undefined

// Native addons compile against the running Node's headers when it ships them (no download).
const nodePrefix = dirname(dirname(process.execPath))
const nodedir = existsSync(join(nodePrefix, 'include/node/node.h')) ? nodePrefix : undefined

/** The environment of a user's shell: nothing of this test run, the monorepo or its services. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (
      /^(npm_(package|lifecycle|command|execpath|node_execpath|config_user_agent)|VITEST|NODE_OPTIONS$|NODE_ENV$|CI$|INIT_CWD$|DATABASE_URL$|REDIS_URL$|PORT$)/.test(
        name,
      )
    )
      continue
    env[name] = value
  }
  if (nodedir !== undefined) env.npm_config_nodedir = nodedir
  return { ...env, ...extra }
}

async function run(
  command: string,
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv = userEnv(),
): Promise<{ stdout: string; stderr: string }> {
  try {
    return await execFileAsync(command, args, { cwd, env, maxBuffer: 20_000_000 })
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string }
    throw new Error(`${command} ${args.join(' ')} failed in ${cwd}:\n${stdout ?? ''}\n${stderr ?? ''}`, {
      cause: error,
    })
  }
}

// What a registry download or the package manager's store can fail with for a moment: the install is tried once more.
const TRANSIENT_INSTALL_FAILURE =
  /failed to import|ECONNRESET|ETIMEDOUT|EAI_AGAIN|socket hang up|ERR_PNPM_FETCH|ERR_PNPM_TARBALL|EINTEGRITY/

/** `manager install` in `cwd`, once more after a transient failure of the download or the store (never of our code). */
async function install(manager: string, args: string[], cwd: string): Promise<void> {
  try {
    await run(manager, ['install', ...args], cwd)
  } catch (error) {
    if (!TRANSIENT_INSTALL_FAILURE.test((error as Error).message)) throw error
    await run(manager, ['install', ...args], cwd)
  }
}

const readme = (name: PackageName) => readFileSync(join(root, 'packages', name, 'README.md'), 'utf8')

function section(markdown: string, title: string): string {
  const start = markdown.indexOf(`## ${title}\n`)
  if (start < 0) throw new Error(`no "## ${title}" section`)
  const end = markdown.indexOf('\n## ', start + 1)
  return markdown.slice(start, end < 0 ? undefined : end)
}

/** The install commands a package README gives for one package manager, from its Install section. */
function installLines(markdown: string, manager: 'npm' | 'pnpm'): string[][] {
  const pattern = manager === 'npm' ? /npm install [^`\n#]+/g : /pnpm add [^`\n#]+/g
  return [...section(markdown, 'Install').matchAll(pattern)].map((match) => match[0].trim().split(/\s+/).slice(2))
}

/** The first TypeScript block of a README's Usage section. */
function usageSnippet(markdown: string): string {
  const match = /```ts\n([\s\S]*?)```/.exec(section(markdown, 'Usage'))
  if (match === null) throw new Error('no ts block under Usage')
  return match[1]!
}

/** Every installed copy of a package (distinct directories, symlinks followed once). */
function installedCopies(appDir: string, name: string): string[] {
  const found = new Set<string>()
  const seen = new Set<string>()
  const walk = (modules: string): void => {
    if (!existsSync(modules)) return
    const real = realpathSync(modules)
    if (seen.has(real)) return
    seen.add(real)
    for (const entry of readdirSync(modules)) {
      if (entry === '.bin') continue
      const path = join(modules, entry)
      if (entry === '.pnpm') {
        for (const store of readdirSync(path))
          if (store !== 'node_modules' && lstatSync(join(path, store)).isDirectory())
            walk(join(path, store, 'node_modules'))
        continue
      }
      const dirs = entry.startsWith('@')
        ? readdirSync(path).map((child) => [`${entry}/${child}`, join(path, child)] as const)
        : [[entry, path] as const]
      for (const [pkg, dir] of dirs) {
        if (!existsSync(join(dir, 'package.json'))) continue
        if (pkg === name) found.add(realpathSync(dir))
        walk(join(dir, 'node_modules'))
      }
    }
  }
  walk(join(appDir, 'node_modules'))
  return [...found]
}

/** Native addons (`*.node` files) anywhere in the app's tree. */
function nativeAddons(appDir: string): string[] {
  const found: string[] = []
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.name.endsWith('.node')) found.push(path)
    }
  }
  walk(join(appDir, 'node_modules'))
  return found
}

/** The tarball `pnpm pack` writes for a package, named after its version (a new package starts below the others). */
const tarball = (packs: string, name: string) => {
  const { version } = JSON.parse(readFileSync(join(root, 'packages', name, 'package.json'), 'utf8')) as {
    version: string
  }
  return join(packs, `saiku-${name}-${version}.tgz`)
}

/** A README line with `@saiku/<name>` pointed at its tarball, as the registry would serve it. */
const withTarballs = (packs: string, args: string[]) =>
  args.map((arg) => (/^@saiku\/\w+$/.test(arg) ? tarball(packs, arg.slice('@saiku/'.length)) : arg))

/**
 * A fresh app. Its one concession to installing from tarballs instead of the registry:
 * `@saiku/core` (a dependency of the other packages) is pinned to its tarball.
 */
function freshApp(
  base: string,
  name: string,
  manager: 'npm' | 'pnpm',
  type: 'module' | 'commonjs',
  packs: string,
  coreDependency = true,
): string {
  const dir = join(base, name)
  mkdirSync(dir, { recursive: true })
  const manifest: Record<string, unknown> = {
    name,
    private: true,
    type,
    // Without it (pnpm only: the override pins the adapters' own dependency), the app cannot import @saiku/core.
    ...(coreDependency ? { dependencies: { '@saiku/core': `file:${tarball(packs, 'core')}` } } : {}),
  }
  if (manager === 'npm') manifest.overrides = { '@saiku/core': '$@saiku/core' }
  else
    writeFileSync(join(dir, 'pnpm-workspace.yaml'), `overrides:\n  '@saiku/core': 'file:${tarball(packs, 'core')}'\n`)
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`)
  return dir
}

async function installFromReadmes(
  dir: string,
  manager: 'npm' | 'pnpm',
  names: PackageName[],
  packs: string,
): Promise<void> {
  for (const name of names) {
    for (const args of installLines(readme(name), manager)) {
      if (manager === 'npm') await run('npm', ['install', '--no-audit', '--no-fund', ...withTarballs(packs, args)], dir)
      else await run('pnpm', ['add', ...withTarballs(packs, args)], dir)
    }
  }
}

// ESM, TypeScript strict: the README snippets as files of the user's project.
const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    noUncheckedIndexedAccess: true,
    exactOptionalPropertyTypes: true,
    verbatimModuleSyntax: true,
    // as `tsc --init` writes it: third-party declarations (e.g. @types/koa's) are not this test's subject
    skipLibCheck: true,
    types: ['node'],
    rootDir: 'src',
    outDir: 'dist',
  },
  include: ['src'],
}

// Runs the README's Express, Koa and Fastify apps (createApp) and node:http listener with a seeded MemoryKeyStore.
const ADAPTERS = `import { createServer, type RequestListener } from 'node:http'
import { once } from 'node:events'
import { createKeyManager, MemoryKeyStore } from '@saiku/core'
import { createApp as createExpressApp } from './express-app.js'
import { createApp as createKoaApp } from './koa-app.js'
import { createApp as createFastifyApp } from './fastify-app.js'
import { createListener as createNodeListener } from './node.js'

async function call(listener: (store: MemoryKeyStore) => RequestListener | Promise<RequestListener>): Promise<number[]> {
  const store = new MemoryKeyStore()
  store.putTenant({ tenantId: 't-1', tenantSlug: 'acme', tier: 'team', connectionName: 'warehouse', subscription: { status: 'active' } })
  const { key } = await createKeyManager(store).create('t-1', { label: 'agent', permissions: ['keys:read'] })
  const server = createServer(await listener(store)).listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  const url = \`http://127.0.0.1:\${typeof address === 'object' && address !== null ? address.port : 0}\`
  const statuses: number[] = []
  for (const [path, auth] of [['/me/tenant', key], ['/me/api-keys', key], ['/me/tenant', 'nope']] as const) {
    statuses.push((await fetch(url + path, { headers: { authorization: \`Bearer \${auth}\` } })).status)
  }
  server.close()
  return statuses
}

const fastify = async (store: MemoryKeyStore): Promise<RequestListener> => {
  const app = createFastifyApp(store)
  await app.ready()
  return (req, res) => app.routing(req, res)
}
console.log(JSON.stringify({ express: await call((store) => createExpressApp(store)), koa: await call((store) => createKoaApp(store).callback()), fastify: await call(fastify), node: await call(createNodeListener) }))
`

// An Express server on the Redis README's helper, shut down as the README shows: the process must end by itself.
const REDIS_SERVER = `import express from 'express'
import { MemoryKeyStore } from '@saiku/core'
import { saikuAuth } from '@saiku/express'
import { redisLimits } from './redis-limits.js'

const store = new MemoryKeyStore()
store.putTenant({ tenantId: 't-1', tenantSlug: 'acme', tier: 'team', connectionName: 'warehouse', subscription: { status: 'active' } })
const redis = await redisLimits(process.env.REDIS_URL!, store)
const auth = saikuAuth(store, { limiter: redis.limiter })
const { key } = await auth.authenticator.keys.create('t-1', { label: 'agent' })
const app = express()
app.use(auth)
app.get('/me/tenant', (req, res) => void res.json(req.saiku!.tenant))
const server = app.listen(0, '127.0.0.1', () => {
  const address = server.address()
  console.log(\`listening on \${typeof address === 'object' && address !== null ? address.port : 0} with \${key}\`)
})
process.once('SIGTERM', () =>
  server.close(() => {
    auth.authenticator.close()
    void redis.close().then(() => console.log('closed'))
  }),
)
`

// What importing the packages loads, by package name: require.cache for CommonJS,
// a resolve hook for ES modules and import().
function loadProbe(kind: 'esm' | 'cjs'): string {
  const hook = `import { appendFileSync } from 'node:fs'
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context)
  if (result.url.includes('/node_modules/')) appendFileSync(process.env.TRACE_FILE, result.url + '\\n')
  return result
}`
  const load = kind === 'esm' ? `const load = (name) => import(name)` : `const load = async (name) => require(name)`
  return `${kind === 'esm' ? `import { register, createRequire } from 'node:module'\nconst require = createRequire(import.meta.url)` : `const { register } = require('node:module')`}
const { readFileSync, writeFileSync } = require('node:fs')
const { generateKeyPairSync } = require('node:crypto')
writeFileSync(process.env.TRACE_FILE, '')
register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}))
${load}
const packageOf = (path) => {
  const rest = path.slice(path.lastIndexOf('/node_modules/') + 14).split('/')
  return rest[0].startsWith('@') ? rest[0] + '/' + rest[1] : rest[0]
}
const loaded = () => [...new Set([...Object.keys(require.cache), ...readFileSync(process.env.TRACE_FILE, 'utf8').split('\\n')]
  .filter((path) => path.includes('/node_modules/')).map(packageOf))].sort()
;(async () => {
  const steps = {}
  const core = await load('@saiku/core')
  steps.imported = loaded()
  const store = new core.MemoryKeyStore()
  const auth = core.createAuthenticator(store)
  await auth.authenticate({ headers: { authorization: 'Bearer sk_live_AAAAAAAAAAAA_nope' }, method: 'GET', url: '/' })
  auth.close()
  steps.authenticated = loaded()
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' })
  const withJwt = core.createAuthenticator(store, { jwt: { key, issuer: 'https://id.example', audience: 'api', algorithms: ['ES256'] } })
  await withJwt.authenticate({ headers: { authorization: 'Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln' }, method: 'GET', url: '/' })
  withJwt.close()
  steps.jwt = loaded()
  const rateLimiterFlexible = await load('@saiku/core/rate-limiter-flexible')
  rateLimiterFlexible.createRateLimiterBackend()
  steps.rateLimiterFlexible = loaded()
  for (const name of ['@saiku/express', '@saiku/koa', '@saiku/fastify', '@saiku/node']) await load(name)
  steps.adapters = loaded()
  console.log(JSON.stringify(steps))
})().catch((error) => { console.error(error); process.exit(1) })
`
}

async function runProbe(dir: string, kind: 'esm' | 'cjs'): Promise<Record<string, string[]>> {
  const file = join(dir, kind === 'esm' ? 'probe.mjs' : 'probe.cjs')
  writeFileSync(file, loadProbe(kind))
  const { stdout } = await run(process.execPath, [file], dir, userEnv({ TRACE_FILE: join(dir, `trace-${kind}.txt`) }))
  return JSON.parse(stdout) as Record<string, string[]>
}

function expectLoadsOnlyWhatWasAskedFor(steps: Record<string, string[]>): void {
  expect(steps.imported, 'importing @saiku/core').toEqual(['@saiku/core'])
  // Metrics are on by default: the OpenTelemetry API (a no-op without an SDK) is loaded with the first authenticator.
  expect(steps.authenticated, 'an authenticator with the default options').toEqual([
    '@opentelemetry/api',
    '@saiku/core',
  ])
  expect(steps.jwt, 'an authenticator with jwt configured').toEqual(['@opentelemetry/api', '@saiku/core', 'jose'])
  expect(steps.rateLimiterFlexible, 'createRateLimiterBackend()').toEqual([
    '@opentelemetry/api',
    '@saiku/core',
    'jose',
    'rate-limiter-flexible',
  ])
  expect(steps.adapters, 'the adapters load no framework of their own').toEqual([
    '@opentelemetry/api',
    '@saiku/core',
    '@saiku/express',
    '@saiku/fastify',
    '@saiku/koa',
    '@saiku/node',
    'fastify-plugin',
    'jose',
    'rate-limiter-flexible',
  ])
}

/** Writes the README snippets into the app, type-checks them all (strict), and returns a runner. */
async function typecheckSnippets(
  dir: string,
  names: PackageName[],
): Promise<(file: string, env?: Record<string, string>) => Promise<string>> {
  mkdirSync(join(dir, 'src'), { recursive: true })
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2))
  for (const name of names) {
    const file = name === 'express' || name === 'koa' || name === 'fastify' ? `${name}-app.ts` : `${name}.ts`
    writeFileSync(join(dir, 'src', file), usageSnippet(readme(name)))
  }
  writeFileSync(join(dir, 'src/adapters.ts'), ADAPTERS)
  await run(tsc, ['-p', 'tsconfig.json'], dir)
  return async (file, env = {}) => (await run(process.execPath, [`dist/${file}`], dir, userEnv(env))).stdout
}

/** Runs the PostgreSQL snippet against a schema of its own, named by `?schema=` only, and checks it was used. */
async function runPostgresSnippet(
  runSnippet: (file: string, env?: Record<string, string>) => Promise<string>,
): Promise<void> {
  const schema = `saiku_new_user_${randomUUID().replaceAll('-', '').slice(0, 12)}`
  const url = new URL(postgresUrl!)
  url.searchParams.set('schema', schema)
  const pool = new pg.Pool({ connectionString: postgresUrl })
  try {
    expect(await runSnippet('postgres.js', { DATABASE_URL: url.toString() })).toContain("tenantSlug: 'acme'")
    const { rows } = await pool.query(`SELECT tenant_slug FROM "${schema}".saiku_tenants`)
    expect(rows).toEqual([{ tenant_slug: 'acme' }])
  } finally {
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await pool.end()
  }
}

describe('a new user', () => {
  let base: string
  let packs: string
  // Every install starts at once; each test waits for its own.
  const pending = new Map<string, Promise<string>>()
  const started = Date.now()
  const app = (name: string) => pending.get(name)!

  beforeAll(async () => {
    base = mkdtempSync(join(tmpdir(), 'saiku-new-user-'))
    packs = join(base, 'packs')
    mkdirSync(packs)
    // `pnpm pack` as `pnpm publish` would: workspace ranges and publishConfig applied.
    await Promise.all(
      PACKAGES.map((name) => run('pnpm', ['pack', '--pack-destination', packs], join(root, 'packages', name))),
    )

    const start = (name: string, setup: () => Promise<string>) => {
      const promise = setup()
      promise.catch(() => {}) // reported by the test that awaits it
      pending.set(name, promise)
    }
    start('npm-esm', async () => {
      const dir = freshApp(base, 'npm-esm', 'npm', 'module', packs)
      await installFromReadmes(dir, 'npm', ['core', 'express', 'koa', 'fastify', 'node', 'postgres', 'redis'], packs)
      await run('npm', ['install', '--no-audit', '--no-fund', '-D', '@types/node@^20.19.43'], dir)
      return dir
    })
    start('pnpm-esm', async () => {
      const dir = freshApp(base, 'pnpm-esm', 'pnpm', 'module', packs)
      await installFromReadmes(
        dir,
        'pnpm',
        ['core', 'express', 'koa', 'fastify', 'node', 'sqlite', 'postgres', 'redis'],
        packs,
      )
      await installFromReadmes(dir, 'pnpm', ['fetch'], packs)
      await run('pnpm', ['add', '-D', '@types/node@^20.19.43'], dir)
      return dir
    })
    start('pnpm-store-author', async () => {
      const dir = freshApp(base, 'pnpm-store-author', 'pnpm', 'module', packs, false)
      await installFromReadmes(dir, 'pnpm', ['express'], packs)
      return dir
    })
    start('npm-cjs', async () => {
      const dir = freshApp(base, 'npm-cjs', 'npm', 'commonjs', packs)
      await installFromReadmes(dir, 'npm', ['core', 'express', 'koa', 'fastify', 'node'], packs)
      return dir
    })
    start('pnpm-cjs', async () => {
      const dir = freshApp(base, 'pnpm-cjs', 'pnpm', 'commonjs', packs)
      await installFromReadmes(dir, 'pnpm', ['core', 'redis'], packs)
      return dir
    })
    for (const [example, manager] of [
      ['express-basic', 'npm'],
      ['fastify-basic', 'pnpm'],
      ['fetch-basic', 'pnpm'],
      ['hono-basic', 'npm'],
      ['koa-basic', 'npm'],
      ['koa-minimal', 'pnpm'],
      ['nextjs-route', 'npm'],
      ['node-http-basic', 'npm'],
      ['saiku-cloud-api', 'pnpm'],
    ] as const) {
      // After the pnpm app: better-sqlite3 then comes built from pnpm's store instead of compiling again.
      const after = manager === 'pnpm' ? app('pnpm-esm').catch(() => undefined) : Promise.resolve(undefined)
      start(`example ${example}`, () => after.then(() => copyExample(example, manager)))
    }
  }, 120_000)

  afterAll(async () => {
    console.log(
      `new-user apps and example copies installed and checked in ${((Date.now() - started) / 1000).toFixed(0)} s`,
    )
    // Nine installed apps: removing them takes a while on a busy disk.
    if (base !== undefined) await rm(base, { recursive: true, force: true })
  }, 180_000)

  /** Copies an example out of the repository as its README says, pointing `workspace:^` at the tarballs, and installs it. */
  async function copyExample(example: string, manager: 'npm' | 'pnpm'): Promise<string> {
    const from = join(root, 'examples', example)
    const dir = join(base, `copy-${example}`)
    cpSync(from, dir, {
      recursive: true,
      filter: (path) => !path.includes('node_modules') && !/\/data\/[^/]+\.(db|db-wal|db-shm|json)$/.test(path),
    })
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<
      string,
      Record<string, string>
    >
    for (const field of ['dependencies', 'devDependencies']) {
      for (const [name, range] of Object.entries(manifest[field] ?? {})) {
        if (range.startsWith('workspace:'))
          manifest[field]![name] = `file:${tarball(packs, name.slice('@saiku/'.length))}`
      }
    }
    if (manager === 'npm') {
      manifest.overrides = { '@saiku/core': '$@saiku/core' }
    } else {
      // The pnpm-workspace.yaml that the example's README gives pnpm users (allowBuilds), plus the tarball pin.
      const allowBuilds = /## Copy it[\s\S]*?```yaml\n([\s\S]*?)```/.exec(readFileSync(join(from, 'README.md'), 'utf8'))
      if (allowBuilds === null) throw new Error(`examples/${example}/README.md gives pnpm users no pnpm-workspace.yaml`)
      writeFileSync(
        join(dir, 'pnpm-workspace.yaml'),
        `${allowBuilds[1]}overrides:\n  '@saiku/core': 'file:${tarball(packs, 'core')}'\n`,
      )
    }
    writeFileSync(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`)
    await install(manager, manager === 'npm' ? ['--no-audit', '--no-fund'] : [], dir)
    // A Next.js app is built before it starts (its README's steps); the build also writes the route types tsc reads.
    if (manifest.scripts?.build?.includes('next build')) await run(manager, ['run', 'build'], dir)
    return dir
  }

  it('gets published manifests without the workspace source condition, and source maps with their sources', async () => {
    const dir = await app('pnpm-esm')
    for (const name of PACKAGES) {
      const [installed] = installedCopies(dir, `@saiku/${name}`)
      const manifestText = readFileSync(join(installed!, 'package.json'), 'utf8')
      expect(manifestText, `@saiku/${name}/package.json`).not.toContain('@saiku/source')
      expect(manifestText, `@saiku/${name}/package.json`).not.toContain('workspace:')
      const manifest = JSON.parse(manifestText) as { exports: Record<string, string | Record<string, string>> }
      for (const target of Object.values(manifest.exports).flatMap((entry) =>
        typeof entry === 'string' ? [entry] : Object.values(entry),
      )) {
        expect(existsSync(join(installed!, target)), `@saiku/${name}: ${target}`).toBe(true)
      }
      const built = readdirSync(join(installed!, 'dist')).filter((file) => /\.(mjs|cjs)$/.test(file))
      // An entry that only hands on names from shared chunks has no code, and no map, of its own.
      const withCode = built.filter((file) =>
        readFileSync(join(installed!, 'dist', file), 'utf8').includes('//# sourceMappingURL='),
      )
      expect(withCode.length).toBeGreaterThan(0)
      for (const file of built.filter((name) => !withCode.includes(name))) {
        const lines = readFileSync(join(installed!, 'dist', file), 'utf8')
          .split('\n')
          .filter((line) => line.trim() !== '')
        const handsOn = /^(import|export|exports\.|const require_|Object\.defineProperty\(exports)/
        expect(
          lines.filter((line) => !handsOn.test(line)),
          `${name}/dist/${file}: code without a source map`,
        ).toEqual([])
      }
      for (const file of withCode) {
        const map = JSON.parse(readFileSync(join(installed!, 'dist', `${file}.map`), 'utf8')) as {
          sources: string[]
          sourcesContent?: (string | null)[]
        }
        expect(map.sourcesContent?.length, `${name}/dist/${file}.map`).toBe(map.sources.length)
        expect(map.sourcesContent!.every((content) => typeof content === 'string' && content.length > 0)).toBe(true)
      }
    }
  }, 300_000)

  describe.each(['npm', 'pnpm'] as const)('with %s, in an ESM TypeScript (strict) app', (manager) => {
    it('installs by the READMEs, with no unused native addon and one copy of each client library', async () => {
      const dir = await app(`${manager}-esm`)
      for (const name of ['@saiku/core', 'ioredis', 'pg', 'express', 'koa', 'fastify'])
        expect(installedCopies(dir, name), name).toHaveLength(1)
      const addons = nativeAddons(dir).map((path) => path.slice(dir.length))
      if (manager === 'npm') expect(addons, 'no @saiku/sqlite here, so no native addon').toEqual([])
      else
        expect(
          addons.every((path) => path.includes('better-sqlite3')),
          addons.join('\n'),
        ).toBe(true)
      const ioredis = JSON.parse(readFileSync(join(installedCopies(dir, 'ioredis')[0]!, 'package.json'), 'utf8')) as {
        version: string
      }
      expect(ioredis.version, 'the README line brings the current ioredis').toMatch(/^6\./)
    }, 300_000)

    it('type-checks and runs the README snippets', async () => {
      const dir = await app(`${manager}-esm`)
      const names: PackageName[] =
        manager === 'pnpm'
          ? ['core', 'express', 'koa', 'fastify', 'node', 'sqlite', 'postgres', 'redis']
          : ['core', 'express', 'koa', 'fastify', 'node', 'postgres', 'redis']
      const runSnippet = await typecheckSnippets(dir, names)
      expect(await runSnippet('core.js')).toContain("tenantSlug: 'acme'")
      expect(JSON.parse(await runSnippet('adapters.js'))).toEqual({
        express: [200, 200, 401],
        koa: [200, 200, 401],
        fastify: [200, 200, 401],
        node: [200, 200, 401],
      })
      if (names.includes('sqlite')) {
        expect(await runSnippet('sqlite.js')).toContain("tenantSlug: 'acme'")
        expect(existsSync(join(dir, 'saiku.db'))).toBe(true)
      }
      if (postgresUrl === undefined)
        console.warn('DATABASE_URL is not set: the PostgreSQL snippet was type-checked, not run')
      else await runPostgresSnippet(runSnippet)
      if (redisUrl === undefined)
        console.warn('REDIS_URL is not set: the Redis snippet (ioredis 6) was type-checked, not run')
      else
        expect(await runSnippet('redis.js', { REDIS_URL: redisUrl })).toMatch(
          /ratelimit: '"minute";r=\d+;t=\d+, "hour";r=\d+;t=\d+'/,
        )
    }, 300_000)

    it('stops a server on the Redis README helper with SIGTERM: both clients closed, the process exits', async () => {
      if (redisUrl === undefined) {
        console.warn('REDIS_URL is not set: the Redis helper was not started')
        return
      }
      const dir = await app(`${manager}-esm`)
      mkdirSync(join(dir, 'src'), { recursive: true })
      writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2))
      const helper = /```ts\n([\s\S]*?)```/.exec(readme('redis').slice(readme('redis').indexOf('### In a server')))
      writeFileSync(join(dir, 'src/redis-limits.ts'), helper![1]!)
      writeFileSync(join(dir, 'src/redis-server.ts'), REDIS_SERVER)
      await run(tsc, ['-p', 'tsconfig.json'], dir)
      const child = spawn(process.execPath, ['dist/redis-server.js'], {
        cwd: dir,
        env: userEnv({ REDIS_URL: redisUrl }),
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let output = ''
      const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
      const listening = new Promise<RegExpExecArray>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the server did not start:\n${output}`)), 30_000)
        const onData = (chunk: Buffer) => {
          output += chunk.toString()
          const found = /listening on (\d+) with (sk_live_\w+)/.exec(output)
          if (found !== null) {
            clearTimeout(timer)
            resolve(found)
          }
        }
        child.stdout.on('data', onData)
        child.stderr.on('data', onData)
        void exited.then(() => reject(new Error(`the server exited:\n${output}`)))
      })
      try {
        const [, port, key] = await listening
        const res = await fetch(`http://127.0.0.1:${port}/me/tenant`, { headers: { authorization: `Bearer ${key}` } })
        expect(res.status).toBe(200)
        expect(res.headers.get('ratelimit')).toMatch(/"minute";r=\d+/)
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
        const [code, signal] = await exited
        clearTimeout(timer)
        expect({ code, signal }, `a graceful shutdown ends the process:\n${output}`).toEqual({ code: 0, signal: null })
        expect(output).toContain('closed')
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      }
    }, 300_000)

    it('loads nothing on import that the user did not ask for', async () => {
      expectLoadsOnlyWhatWasAskedFor(await runProbe(await app(`${manager}-esm`), 'esm'))
    }, 300_000)
  })

  describe.each(['npm', 'pnpm'] as const)('with %s, in a CommonJS app', (manager) => {
    it('requires the packages and loads nothing it did not ask for', async () => {
      const dir = await app(`${manager}-cjs`)
      expect(nativeAddons(dir), 'no @saiku/sqlite here, so no native addon').toEqual([])
      expect(installedCopies(dir, 'better-sqlite3')).toEqual([])
      if (manager === 'npm') expectLoadsOnlyWhatWasAskedFor(await runProbe(dir, 'cjs'))
      else {
        // `pnpm add @saiku/redis ioredis` once failed here with ERR_PNPM_IGNORED_BUILDS (an unused better-sqlite3).
        expect(installedCopies(dir, 'ioredis')).toHaveLength(1)
        const { stdout } = await run(
          process.execPath,
          ['-e', "console.log(typeof require('@saiku/redis').createRedisLimiter)"],
          dir,
        )
        expect(stdout.trim()).toBe('function')
      }
    }, 300_000)
  })

  it('with pnpm and only @saiku/express installed, types a key store of its own and key management from it alone', async () => {
    const dir = await app('pnpm-store-author')
    // Strict pnpm: @saiku/core is the adapter's dependency, out of the app's reach.
    const resolved = await run(
      process.execPath,
      ['-e', "import('@saiku/core').then(() => console.log('found'), (error) => console.log(error.code))"],
      dir,
    )
    expect(resolved.stdout.trim()).toBe('ERR_MODULE_NOT_FOUND')
    mkdirSync(join(dir, 'src'), { recursive: true })
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({ ...TSCONFIG, compilerOptions: { ...TSCONFIG.compilerOptions, types: [] } }, null, 2),
    )
    cpSync(join(root, 'test/fixtures/store-author/my-store.ts'), join(dir, 'src/my-store.ts'))
    await run(tsc, ['-p', 'tsconfig.json'], dir)
    const { stdout } = await run(process.execPath, ['dist/my-store.js'], dir)
    expect(JSON.parse(stdout)).toEqual({ created: true, listed: 1 })
  }, 300_000)

  it('with pnpm and better-sqlite3 not allowed to build: the first use of @saiku/sqlite says what to run', async () => {
    const dir = await app('pnpm-cjs')
    const added = await run('pnpm', ['add', tarball(packs, 'sqlite')], dir).then(
      () => 'installed',
      (error: Error) => error.message,
    )
    expect(added).toContain('ERR_PNPM_IGNORED_BUILDS')
    const probe =
      "try { new (require('@saiku/sqlite').SqliteKeyStore)(':memory:') } catch (error) { console.log(error.message) }"
    const { stdout } = await run(process.execPath, ['-e', probe], dir)
    expect(stdout).toContain("better-sqlite3's native binding is missing")
    expect(stdout).toContain('pnpm approve-builds')
  }, 300_000)

  describe.each([
    'express-basic',
    'fastify-basic',
    'fetch-basic',
    'hono-basic',
    'koa-basic',
    'koa-minimal',
    'nextjs-route',
    'node-http-basic',
    'saiku-cloud-api',
  ])('the example %s, copied out of the repository', (example) => {
    let child: ChildProcess | undefined
    afterAll(async () => {
      if (child?.exitCode === null) {
        process.kill(-child.pid!, 'SIGTERM')
        await new Promise((resolve) => child!.once('exit', resolve))
      }
    })

    it('imports nothing from outside its folder and type-checks with its own tsconfig', async () => {
      const dir = await app(`example ${example}`)
      const sources: string[] = []
      const walk = (relative: string): void => {
        for (const entry of readdirSync(join(root, 'examples', example, relative), { withFileTypes: true })) {
          const path = relative === '' ? entry.name : `${relative}/${entry.name}`
          if (entry.isDirectory() && entry.name !== 'node_modules') walk(path)
          else if (entry.isFile() && /\.(ts|mjs)$/.test(entry.name)) sources.push(path)
        }
      }
      walk('')
      for (const file of sources) {
        const text = readFileSync(join(root, 'examples', example, file), 'utf8')
        const depth = file.split('/').length - 1
        for (const [, specifier] of text.matchAll(/from '(\.[^']*)'/g)) {
          expect(
            specifier!.split('/').filter((part) => part === '..').length,
            `${file} imports ${specifier}`,
          ).toBeLessThanOrEqual(depth)
        }
        // What the copied app runs knows nothing of the monorepo (the reference server's end-to-end tests drive its `pnpm start`).
        if (!file.startsWith('test/')) expect(text, file).not.toContain('@saiku/source')
      }
      await run(tsc, ['-p', 'tsconfig.json'], dir)
    }, 300_000)

    it('starts with its start script and answers', async () => {
      const dir = await app(`example ${example}`)
      const manager = existsSync(join(dir, 'pnpm-workspace.yaml')) ? 'pnpm' : 'npm'
      // `next start` cannot choose a port and tell it: it gets a free one.
      const port = example === 'nextjs-route' ? String(await freePort()) : '0'
      child = spawn(manager, ['start'], {
        cwd: dir,
        env: userEnv({ PORT: port }),
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      })
      let output = ''
      const match = await new Promise<RegExpMatchArray>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${example} did not start:\n${output}`)), 60_000)
        const onData = (chunk: Buffer) => {
          output += chunk.toString()
          const found = /curl (http:\/\/127\.0\.0\.1:\d+)\/me\/tenant -H "Authorization: Bearer (sk_live_\w+)"/.exec(
            output,
          )
          if (found !== null) {
            clearTimeout(timer)
            resolve(found)
          }
        }
        child!.stdout!.on('data', onData)
        child!.stderr!.on('data', onData)
        child!.once('exit', (code) => reject(new Error(`${example} exited with ${code}:\n${output}`)))
      })
      const res = await fetch(`${match[1]}/me/tenant`, { headers: { authorization: `Bearer ${match[2]}` } })
      expect(res.status).toBe(200)
      expect(await res.json()).toMatchObject({ tenantSlug: 'acme', tier: 'starter' })
      const refused = await fetch(`${match[1]}/me/tenant`, { headers: { authorization: 'Bearer sk_live_nope' } })
      expect(refused.status).toBe(401)
      expect(await refused.json()).toEqual({ error: 'unauthorized', message: 'API key missing or invalid.' })
    }, 300_000)
  })
})
