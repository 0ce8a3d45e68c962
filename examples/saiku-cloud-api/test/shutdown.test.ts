import { spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http'
import { connect } from 'node:net'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { postgresUrl, redisUrl } from './services.js'
import { REPEAT_WINDOW_MS } from '../src/shutdown.js'
import {
  cliJson,
  exampleDir,
  processTimeout,
  repoRoot,
  startServer,
  tempDatabase,
  waitFor,
  type RunningServer,
  type TempDir,
} from './helpers.js'

/** A POST /me/api-keys whose body is still coming: admitted on its headers, answered once `finish` sends the rest. */
interface SlowRequest {
  readonly request: ClientRequest
  finish(): void
  readonly response: Promise<{ status: number; connection: string | undefined; body: any } | { error: string }>
}

function slowMint(server: RunningServer, key: string, label: string): SlowRequest {
  const request = httpRequest(`${server.url}/me/api-keys`, {
    method: 'POST',
    agent: false,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
  })
  const response = new Promise<{ status: number; connection: string | undefined; body: any } | { error: string }>(
    (resolve) => {
      request.on('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? error.message }))
      request.on('response', (res: IncomingMessage) => {
        let text = ''
        res.on('data', (chunk: Buffer) => (text += chunk.toString()))
        res.on('error', (error: NodeJS.ErrnoException) => resolve({ error: error.code ?? error.message }))
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            connection: res.headers.connection,
            body: text === '' ? undefined : JSON.parse(text),
          }),
        )
      })
    },
  )
  request.write(`{"label":${JSON.stringify(label)}`)
  return { request, response, finish: () => request.end(',"permissions":["keys:read"]}') }
}

/** What the tenant's minute window has left, read from a request's RateLimit field (the request itself counts). */
async function minuteRemaining(server: RunningServer, key: string): Promise<number> {
  const res = await fetch(`${server.url}/me/tenant`, { headers: { authorization: `Bearer ${key}` } })
  await res.arrayBuffer()
  expect(res.status, JSON.stringify(server.logs.filter((line) => line.msg === 'refused'))).toBe(200)
  return Number(res.headers.get('ratelimit')!.match(/"minute";r=(\d+)/)![1])
}

/**
 * Waits until the tenant's count shows `pending` requests admitted beside the
 * probes themselves: the limiter counts a request when it is admitted.
 */
async function untilAdmitted(server: RunningServer, key: string, pending: number): Promise<void> {
  let probes = 0
  await waitFor(async () => (await minuteRemaining(server, key)) === 60 - pending - ++probes, 10_000)
}

/** Whether a new TCP connection to the server is refused. */
async function refusesConnections(server: RunningServer): Promise<boolean> {
  const { hostname, port } = new URL(server.url)
  const socket = connect(Number(port), hostname)
  try {
    await once(socket, 'connect')
    return false
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ECONNREFUSED'
  } finally {
    socket.destroy()
  }
}

/** The process's exit, or a failure if it is still running after `ms` (a guard against a hang, not a timing check). */
async function exitWithin(
  server: RunningServer,
  ms: number,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the server was still running ${ms} ms after the signal`)), ms)
  })
  try {
    return await Promise.race([server.exited, hang])
  } finally {
    clearTimeout(timer)
  }
}

// Its tests start the server, the build and CLI runs: bounds against a hang, scaled for a loaded machine.
vi.setConfig({ testTimeout: processTimeout(5), hookTimeout: processTimeout(3) })

const log = (server: RunningServer, msg: string) => server.logs.find((line) => line.msg === msg)

beforeAll(() => {
  for (const name of ['core', 'express', 'sqlite', 'postgres', 'redis']) {
    if (!existsSync(join(repoRoot, `packages/${name}/dist/index.mjs`)))
      throw new Error(`packages/${name}/dist is missing: run "pnpm build" first`)
  }
  // The production build, as `pnpm build:server` makes it after the packages.
  const built = spawnSync('pnpm', ['--filter', '@saiku/example-saiku-cloud-api', 'build'], {
    cwd: repoRoot,
    encoding: 'utf8',
  })
  if (built.status !== 0) throw new Error(`the example's build failed:\n${built.stdout}\n${built.stderr}`)
  expect(existsSync(join(exampleDir, 'dist/server.mjs'))).toBe(true)
})

const setups = [
  { name: 'SQLite, limits in memory', postgres: false, skip: false },
  { name: 'PostgreSQL, limits in Redis', postgres: true, skip: postgresUrl === undefined || redisUrl === undefined },
]

/**
 * The environment of a production server on a SQLite database of its own, made before the
 * tests of the describe block that calls this and removed after them.
 */
function sqliteServerEnv(): Record<string, string> {
  const env: Record<string, string> = {}
  let db: TempDir | undefined
  beforeAll(() => {
    db = tempDatabase()
    Object.assign(env, { DATABASE_URL: db.databaseUrl, REDIS_URL: '', SAIKU_DATA_DIR: db.path })
  })
  afterAll(() => db?.remove())
  return env
}

describe.each(setups)('the production server (node dist/server.mjs) on SIGTERM, $name', (setup) => {
  const schema = `saiku_stop_${randomUUID().replaceAll('-', '').slice(0, 12)}`
  let db: TempDir
  let env: Record<string, string>

  beforeAll(() => {
    db = tempDatabase()
    const url = new URL(postgresUrl ?? 'postgres://unused')
    url.searchParams.set('schema', schema)
    env = {
      DATABASE_URL: setup.postgres ? url.toString() : db.databaseUrl,
      REDIS_URL: setup.postgres ? (redisUrl ?? '') : '',
      SAIKU_DATA_DIR: db.path,
    }
  })
  afterAll(async () => {
    db?.remove()
    if (setup.postgres && postgresUrl !== undefined) {
      const pool = new pg.Pool({ connectionString: postgresUrl })
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      await pool.end()
    }
  })

  it.skipIf(setup.skip)(
    'answers every admitted request, refuses new connections, writes the last-used times and usage, and exits 0',
    async () => {
      const inFlightCount = 4
      const server = await startServer({ ...env, SHUTDOWN_TIMEOUT_MS: '20000' }, 'dist')
      try {
        const key = server.demoKey!
        expect(key, `${server.stderr()}\n${server.stdout()}`).toMatch(/^sk_live_/)
        // Four mints whose bodies are still on their way: each is admitted (counted) on its headers.
        const inFlight = Array.from({ length: inFlightCount }, (_, i) => slowMint(server, key, `in-flight-${i}`))
        await untilAdmitted(server, key, inFlight.length)

        process.kill(server.pid, 'SIGTERM')
        await waitFor(() => log(server, 'shutting down') !== undefined, 10_000)
        expect(log(server, 'shutting down')).toMatchObject({
          signal: 'SIGTERM',
          inFlight: inFlight.length,
          timeoutMs: 20_000,
        })
        expect(await refusesConnections(server)).toBe(true)

        // The rest of each body arrives after the signal: every request is still answered in full.
        for (const slow of inFlight) slow.finish()
        const replies = await Promise.all(inFlight.map((slow) => slow.response))
        for (const [i, reply] of replies.entries()) {
          expect(reply).toMatchObject({
            status: 201,
            connection: 'close',
            body: { label: `in-flight-${i}`, permissions: ['keys:read'], secret: expect.stringMatching(/^sk_live_/) },
          })
        }

        expect(await exitWithin(server, 30_000)).toEqual({ code: 0, signal: null })
        expect(log(server, 'stopped')).toMatchObject({
          exitCode: 0,
          flushedKeyUses: 1,
          writtenUsageBuckets: expect.any(Number),
        })
      } finally {
        await server.stop()
      }

      // The usage history too: every request admitted before the signal, the four mints among them.
      const history = await cliJson<{ totals: { admitted: number }; keys: { admitted: number }[] }>(
        ['usage', '--tenant', 'acme', '--history', '--since', '24h'],
        env,
      )
      expect(history.totals.admitted).toBeGreaterThanOrEqual(inFlightCount + 1)

      // Written before the exit: the key's last use (batched, due only 10 s later) and the four new keys.
      const keys = await cliJson<{ keyId: string; label: string; lastUsedAt: string | null }[]>(
        ['keys', 'list', '--tenant', 'acme'],
        env,
      )
      expect(keys.find((k) => k.label === 'production-agent')!.lastUsedAt).not.toBeNull()
      expect(keys.map((k) => k.label).sort()).toEqual([
        'in-flight-0',
        'in-flight-1',
        'in-flight-2',
        'in-flight-3',
        'production-agent',
      ])
    },
    processTimeout(5),
  )
})

describe('the production server when shutting down takes too long', () => {
  const env = sqliteServerEnv()

  it('cuts a request still open when SHUTDOWN_TIMEOUT_MS passes, still writes the last-used times, and exits 1', async () => {
    const server = await startServer({ ...env, SHUTDOWN_TIMEOUT_MS: '1500' }, 'dist')
    try {
      const stalled = slowMint(server, server.demoKey!, 'never-finished')
      await untilAdmitted(server, server.demoKey!, 1)
      process.kill(server.pid, 'SIGTERM')
      expect(await exitWithin(server, 20_000)).toEqual({ code: 1, signal: null })
      expect(log(server, 'shutdown bound passed: cutting requests still in flight')).toMatchObject({
        cut: 1,
        timeoutMs: 1500,
      })
      expect(log(server, 'stopped')).toMatchObject({ exitCode: 1, flushedKeyUses: 1 })
      expect(await stalled.response).toEqual({ error: expect.any(String) })
    } finally {
      await server.stop()
    }
    const keys = await cliJson<{ label: string; lastUsedAt: string | null }[]>(
      ['keys', 'list', '--tenant', 'acme'],
      env,
    )
    expect(keys.map((k) => [k.label, k.lastUsedAt === null])).toEqual([['production-agent', false]])
  })

  it('exits at once with 143 on a second SIGTERM, while a request would hold it for a minute', async () => {
    const server = await startServer({ ...env, SHUTDOWN_TIMEOUT_MS: '60000' }, 'dist')
    try {
      const key = await mintKey(server, env)
      const stalled = slowMint(server, key, 'held')
      await untilAdmitted(server, key, 1)
      process.kill(server.pid, 'SIGTERM')
      await waitFor(() => log(server, 'shutting down') !== undefined, 10_000)
      // Later than the window in which repeats count as the same Ctrl-C.
      await new Promise((resolve) => setTimeout(resolve, REPEAT_WINDOW_MS + 250))
      process.kill(server.pid, 'SIGTERM')
      expect(await exitWithin(server, 10_000)).toEqual({ code: 143, signal: null })
      expect(log(server, 'second signal: exiting without waiting')).toMatchObject({ signal: 'SIGTERM', exitCode: 143 })
      expect(await stalled.response).toEqual({ error: expect.any(String) })
    } finally {
      await server.stop()
    }
  })

  it('takes a Ctrl-C that arrives several times at once (process group and launcher) as one request to stop', async () => {
    const server = await startServer(env, 'dist')
    try {
      const key = await mintKey(server, env)
      const slow = slowMint(server, key, 'during-ctrl-c')
      await untilAdmitted(server, key, 1)
      process.kill(server.pid, 'SIGINT')
      process.kill(server.pid, 'SIGINT')
      process.kill(server.pid, 'SIGTERM')
      await waitFor(() => log(server, 'shutting down') !== undefined, 10_000)
      slow.finish()
      expect(await slow.response).toMatchObject({ status: 201, connection: 'close' })
      expect(await exitWithin(server, 20_000)).toEqual({ code: 0, signal: null })
      expect(server.logs.filter((line) => line.msg === 'shutting down')).toHaveLength(1)
    } finally {
      await server.stop()
    }
  })
})

/**
 * Makes the server write more log lines than a pipe holds while the test reads none of them:
 * 100 requests for a missing asset, each logged with its 8,000-character path (800 KB of
 * lines, several times what a pipe or socket buffers).
 */
async function fillStdout(server: RunningServer): Promise<void> {
  server.stopReadingStdout()
  const path = `/assets/${'x'.repeat(8_000)}`
  for (let i = 0; i < 100; i++) {
    const res = await fetch(`${server.url}${path}`)
    await res.arrayBuffer()
    expect(res.status).toBe(404)
  }
}

describe('the production server when nobody reads its stdout any more', () => {
  const env = sqliteServerEnv()

  it('still shuts down on SIGTERM and exits 0, its log lines waiting in memory instead of blocking it', async () => {
    const server = await startServer({ ...env, SHUTDOWN_TIMEOUT_MS: '2000' }, 'dist')
    try {
      await fillStdout(server)
      process.kill(server.pid, 'SIGTERM')
      // The bound: 2 s for requests, 5 s for the cleanup and the last log lines, and room for a loaded machine.
      expect(await exitWithin(server, 30_000)).toEqual({ code: 0, signal: null })
    } finally {
      await server.stop()
    }
  })

  it('exits at once with 143 on a second SIGTERM, while a request would hold it for a minute', async () => {
    const server = await startServer({ ...env, SHUTDOWN_TIMEOUT_MS: '60000' }, 'dist')
    try {
      const key = await mintKey(server, env)
      await fillStdout(server)
      const stalled = slowMint(server, key, 'held')
      await untilAdmitted(server, key, 1)
      process.kill(server.pid, 'SIGTERM')
      // Its log is not read: that it stopped listening says the shutdown began.
      await waitFor(() => refusesConnections(server), 10_000)
      await new Promise((resolve) => setTimeout(resolve, REPEAT_WINDOW_MS + 250))
      process.kill(server.pid, 'SIGTERM')
      expect(await exitWithin(server, 10_000)).toEqual({ code: 143, signal: null })
      expect(await stalled.response).toEqual({ error: expect.any(String) })
    } finally {
      await server.stop()
    }
  })
})

/** A raw connection to the server, with what it has received so far and whether the server closed it. */
function rawConnection(server: RunningServer) {
  const { hostname, port } = new URL(server.url)
  const socket = connect(Number(port), hostname)
  let received = ''
  socket.on('data', (chunk: Buffer) => (received += chunk.toString()))
  socket.on('error', () => {})
  const closed = once(socket, 'close').then(() => true)
  return { socket, received: () => received, closed }
}

describe('the production server on SIGTERM with connections that have nothing left to answer', () => {
  const env = sqliteServerEnv()

  it('closes an idle keep-alive connection and one still uploading a body already refused, and exits 0 without waiting out the bound', async () => {
    const server = await startServer({ ...env, SHUTDOWN_TIMEOUT_MS: '60000' }, 'dist')
    try {
      const idle = rawConnection(server)
      idle.socket.write('GET /healthz HTTP/1.1\r\nHost: saiku.test\r\n\r\n')
      await waitFor(() => idle.received().includes('{"status":"ok"}'), 10_000)
      expect(idle.received()).toMatch(/^HTTP\/1\.1 200 /)

      // Refused on its headers (no valid key) while most of its body is still to come.
      const uploading = rawConnection(server)
      uploading.socket.write(
        'POST /me/api-keys HTTP/1.1\r\nHost: saiku.test\r\nAuthorization: Bearer sk_live_not_a_key\r\n' +
          'Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{"label":"',
      )
      await waitFor(() => uploading.received().includes('\r\n\r\n{'), 10_000)
      expect(uploading.received()).toMatch(/^HTTP\/1\.1 401 /)
      const keepUploading = setInterval(() => uploading.socket.write('x'.repeat(1_000)), 100)
      try {
        process.kill(server.pid, 'SIGTERM')
        // Far less than SHUTDOWN_TIMEOUT_MS: nothing was left to answer.
        expect(await exitWithin(server, 20_000)).toEqual({ code: 0, signal: null })
        expect(await idle.closed).toBe(true)
        expect(await uploading.closed).toBe(true)
        expect(log(server, 'stopped')).toMatchObject({ exitCode: 0, droppedLogLines: 0 })
      } finally {
        clearInterval(keepUploading)
        idle.socket.destroy()
        uploading.socket.destroy()
      }
    } finally {
      await server.stop()
    }
  })
})

/** A key of the demo tenant, minted through the running server with the demo key when the store was seeded by this start. */
async function mintKey(server: RunningServer, env: Record<string, string>): Promise<string> {
  if (server.demoKey !== undefined) return server.demoKey
  const created = await cliJson<{ secret: string }>(
    ['keys', 'create', '--tenant', 'acme', '--label', `k-${randomUUID().slice(0, 8)}`],
    env,
  )
  return created.secret
}

describe('pnpm start', () => {
  const env = sqliteServerEnv()

  it('stops the server when only the pnpm process gets SIGTERM, leaving nothing running', async () => {
    const server = await startServer(env, 'pnpm start')
    try {
      expect(await refusesConnections(server)).toBe(false)
      process.kill(server.pid, 'SIGTERM')
      expect(await exitWithin(server, 30_000)).toEqual({ code: 0, signal: null })
      expect(log(server, 'stopped')).toMatchObject({ exitCode: 0 })
      expect(await refusesConnections(server)).toBe(true)
    } finally {
      await server.stop()
    }
  })
})

describe('SHUTDOWN_TIMEOUT_MS', () => {
  it('refuses a value that is not a positive whole number of milliseconds, before starting', () => {
    const db = tempDatabase()
    try {
      for (const value of ['0', '-1', '2.5', '5s', '9999999999']) {
        const run = spawnSync(process.execPath, ['dist/server.mjs'], {
          cwd: exampleDir,
          env: {
            ...process.env,
            PORT: '0',
            DATABASE_URL: db.databaseUrl,
            REDIS_URL: '',
            SAIKU_DATA_DIR: db.path,
            SHUTDOWN_TIMEOUT_MS: value,
          },
          encoding: 'utf8',
          timeout: processTimeout(1),
        })
        expect([run.status, run.stderr.trim()], value).toEqual([
          1,
          `saiku: SHUTDOWN_TIMEOUT_MS: expected a positive whole number of milliseconds, got ${JSON.stringify(value)}`,
        ])
        expect(run.stdout).toBe('')
      }
    } finally {
      db.remove()
    }
  })
})

describe('the production start as docs/production.md gives it', () => {
  it('runs the command of the start:prod script, on what build:server builds', () => {
    const scripts = (
      JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
    ).scripts
    const example = (
      JSON.parse(readFileSync(join(exampleDir, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
    ).scripts
    expect(scripts['build:server']).toBe('pnpm build && pnpm --filter @saiku/example-saiku-cloud-api build')
    expect(example.build).toBe('tsdown')
    const command = scripts['start:prod']!.replace(/^exec /, '')
    expect(command).toBe('node --enable-source-maps examples/saiku-cloud-api/dist/server.mjs')
    const readme = readFileSync(join(repoRoot, 'docs/production.md'), 'utf8')
    const dockerfile = readme.match(/```dockerfile\n([\s\S]*?)```/)![1]!
    expect(dockerfile).toContain('RUN pnpm bootstrap && pnpm build:server\n')
    expect(dockerfile).toContain(`CMD ${JSON.stringify(command.split(' '))}\n`.replaceAll(',', ', '))
    expect(readme).toContain(`${command}   # or: pnpm start:prod`)
    // What the shutdown tests above start is that command.
    expect(example['start:prod']).toBe('exec node --enable-source-maps dist/server.mjs')
  })
})
