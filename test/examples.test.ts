import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '')
const read = (path: string) => readFileSync(`${root}/${path}`, 'utf8')

// koa-minimal is the app a newcomer reads first: Koa and the two packages it shows, nothing else.
describe('examples/koa-minimal', () => {
  it('depends on koa, @saiku/core and @saiku/koa, and tsx to start it, nothing else', () => {
    const manifest = JSON.parse(read('examples/koa-minimal/package.json')) as { dependencies: Record<string, string> }
    expect(Object.keys(manifest.dependencies).sort()).toEqual(['@saiku/core', '@saiku/koa', 'koa', 'tsx'])
  })
})

// Each example starts as a newcomer starts it: `pnpm start` in its own folder, or its script from the root, with no
// build first (the workspace's packages have no dist/ until `pnpm build`).
const startable = [
  { folder: 'koa-minimal', rootScript: 'example:koa-minimal' },
  { folder: 'express-basic', rootScript: 'example:express' },
  { folder: 'koa-basic', rootScript: 'example:koa' },
  { folder: 'fastify-basic', rootScript: 'example:fastify' },
  { folder: 'fetch-basic', rootScript: 'example:fetch' },
  { folder: 'hono-basic', rootScript: 'example:hono' },
  { folder: 'node-http-basic', rootScript: 'example:node' },
  { folder: 'saiku-cloud-api', rootScript: 'start' },
] as const

/** Runs `pnpm <args>` in `cwd` on a free port until it prints a demo key, calls GET /me/tenant with it, then stops it. */
async function startAndCall(cwd: string, args: readonly string[]) {
  const data = mkdtempSync(join(tmpdir(), 'saiku-example-'))
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: '0',
    // The reference server: a store of its own, so a developer's data/ and their demo key are left alone.
    DATABASE_URL: `sqlite:${join(data, 'saiku.db')}`,
    SAIKU_DATA_DIR: data,
  }
  delete env.REDIS_URL
  delete env.NODE_OPTIONS
  const child = spawn('pnpm', ['--silent', ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  const exited = once(child, 'exit')
  let output = ''
  try {
    const found = await new Promise<RegExpExecArray>((resolve, reject) => {
      const look = (chunk: Buffer) => {
        output += chunk.toString()
        const match = /curl (http:\/\/127\.0\.0\.1:\d+)\/me\/tenant -H "Authorization: Bearer (sk_\w+)"/.exec(output)
        if (match !== null) resolve(match)
      }
      child.stdout.on('data', look)
      child.stderr.on('data', look)
      void exited.then(([code]) => reject(new Error(`pnpm ${args.join(' ')} exited (${String(code)}):\n${output}`)))
    })
    const [, url, key] = found
    const response = await fetch(`${url}/me/tenant`, { headers: { authorization: `Bearer ${key}` } })
    return { status: response.status, body: (await response.json()) as Record<string, unknown> }
  } finally {
    if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGTERM')
    await exited
    rmSync(data, { recursive: true, force: true })
  }
}

describe.each(startable)('examples/$folder', ({ folder, rootScript }) => {
  it('starts from its own folder with pnpm start and answers GET /me/tenant with its demo key', async () => {
    const { status, body } = await startAndCall(`${root}/examples/${folder}`, ['start'])
    expect(status).toBe(200)
    expect(body.tenantSlug).toBe('acme')
  }, 60_000)

  it(`starts from the root with pnpm ${rootScript}`, async () => {
    const manifest = JSON.parse(read('package.json')) as { scripts: Record<string, string> }
    const name = (JSON.parse(read(`examples/${folder}/package.json`)) as { name: string }).name
    expect(manifest.scripts[rootScript]).toContain(`--filter ${name} start`)
    const { status, body } = await startAndCall(root, [rootScript])
    expect(status).toBe(200)
    expect(body.tenantSlug).toBe('acme')
  }, 60_000)
})

describe('examples/saiku-cloud-api CLI', () => {
  it('runs from its own folder with pnpm saiku', async () => {
    const data = mkdtempSync(join(tmpdir(), 'saiku-example-'))
    try {
      const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: `sqlite:${join(data, 'saiku.db')}` }
      delete env.NODE_OPTIONS
      const child = spawn('pnpm', ['--silent', 'saiku', 'tenants', 'list'], {
        cwd: `${root}/examples/saiku-cloud-api`,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let output = ''
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
      const [code] = await once(child, 'exit')
      expect({ code, output }).toEqual({ code: 0, output: expect.not.stringContaining('ERR_MODULE_NOT_FOUND') })
    } finally {
      rmSync(data, { recursive: true, force: true })
    }
  }, 60_000)
})

// fastify-basic is the Fastify user's first app: Fastify, the plugin and core, and tsx to start it.
describe('examples/fastify-basic', () => {
  it('depends on fastify, @saiku/core and @saiku/fastify, and tsx to start it, nothing else', () => {
    const manifest = JSON.parse(read('examples/fastify-basic/package.json')) as { dependencies: Record<string, string> }
    expect(Object.keys(manifest.dependencies).sort()).toEqual(['@saiku/core', '@saiku/fastify', 'fastify', 'tsx'])
  })
})

// hono-basic is the Hono user's first app: Hono and its Node server, the middleware and core, and tsx to start it.
describe('examples/hono-basic', () => {
  it('depends on hono, @hono/node-server, @saiku/core and @saiku/fetch, and tsx to start it, nothing else', () => {
    const manifest = JSON.parse(read('examples/hono-basic/package.json')) as { dependencies: Record<string, string> }
    expect(Object.keys(manifest.dependencies).sort()).toEqual([
      '@hono/node-server',
      '@saiku/core',
      '@saiku/fetch',
      'hono',
      'tsx',
    ])
  })
})

// node-http-basic is the framework-less user's first app: node:http, the adapter and core, and tsx to start it.
describe('examples/node-http-basic', () => {
  it('depends on @saiku/core and @saiku/node, and tsx to start it, nothing else', () => {
    const manifest = JSON.parse(read('examples/node-http-basic/package.json')) as {
      dependencies: Record<string, string>
    }
    expect(Object.keys(manifest.dependencies).sort()).toEqual(['@saiku/core', '@saiku/node', 'tsx'])
  })
})

// fetch-basic is the Fetch handler user's first app: the package and core, a Node bridge, and tsx to start it on Node.
describe('examples/fetch-basic', () => {
  it('depends on @saiku/fetch, @saiku/core, @hono/node-server for Node, and tsx, nothing else', () => {
    const manifest = JSON.parse(read('examples/fetch-basic/package.json')) as { dependencies: Record<string, string> }
    expect(Object.keys(manifest.dependencies).sort()).toEqual([
      '@hono/node-server',
      '@saiku/core',
      '@saiku/fetch',
      'tsx',
    ])
  })
})
