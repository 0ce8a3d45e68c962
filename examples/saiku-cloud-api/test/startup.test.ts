import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { DEFAULT_TIERS, MemoryKeyStore } from '@saiku/core'
import { ConfigError } from '../src/config.js'
import { readDashboardSettings } from '../src/dashboard/settings.js'
import { checkMetricsPort, readReportOnlyLimits, resolveReportOnlyLimits } from '../src/operations.js'
import { exampleDir, processTimeout, startServer, tempDatabase } from './helpers.js'

// Bounds against a hang for tests that start processes, scaled for a loaded machine.
const ONE_START_MS = processTimeout(1)
const TWO_STARTS_MS = processTimeout(2)
const SIX_STARTS_MS = processTimeout(6)

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
  it(
    'exits with one clear line saying what is wrong and what to do, never a stack trace',
    { timeout: TWO_STARTS_MS },
    async () => {
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
    },
  )
})

/** Starts the server from its sources with `env`; resolves with its exit code and output, or kills it after `ms`. */
async function startExpectingRefusal(env: Record<string, string>, ms: number) {
  const child = spawn(process.execPath, ['--conditions=@saiku/source', '--import', 'tsx', 'src/server.ts'], {
    cwd: exampleDir,
    env: { ...process.env, PORT: '0', REDIS_URL: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  // A server that starts instead of refusing is the failure to report: stop it.
  const timer = setTimeout(() => child.kill('SIGKILL'), ms)
  const [code] = (await once(child, 'exit')) as [number | null]
  clearTimeout(timer)
  return { code, stdout, stderr }
}

const tenant = {
  tenantId: '0b6f6c1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'w',
  subscription: { status: 'active' as const },
}

describe('settings refused at start-up, each in one line', () => {
  it('TRUST_PROXY: refuses "true" and subnets that hold every address, steering to a hop count or addresses', () => {
    for (const value of ['true', '0.0.0.0/0', 'loopback, ::/0']) {
      expect(() => readDashboardSettings({ TRUST_PROXY: value }), value).toThrow(
        new ConfigError(
          `TRUST_PROXY: ${JSON.stringify(value)} lets any client choose its own address (X-Forwarded-For); give the number of proxies in front (e.g. 1) or their addresses (e.g. loopback, 10.0.0.0/8)`,
        ),
      )
    }
    expect(readDashboardSettings({ TRUST_PROXY: '1' }).trustProxy).toBe(1)
    expect(readDashboardSettings({ TRUST_PROXY: 'loopback, 10.0.0.0/8' }).trustProxy).toBe('loopback, 10.0.0.0/8')
    expect(readDashboardSettings({ TRUST_PROXY: 'false' }).trustProxy).toBe(false)
  })

  it('TRUST_PROXY: refuses, in one line naming what it could not read, an address list the server cannot use', () => {
    for (const [value, problem] of [
      ['loopbak', 'invalid IP address: loopbak'],
      ['10.0.0.0/33', 'invalid range on address: 10.0.0.0/33'],
      ['loopback, 10.0.0.0/255.0.0.0, 0.0.0.0/0.0.0.0', 'invalid range on address: 0.0.0.0/0.0.0.0'],
    ] as const) {
      expect(() => readDashboardSettings({ TRUST_PROXY: value }), value).toThrow(
        new ConfigError(
          `TRUST_PROXY: cannot read ${JSON.stringify(value)} (${problem}); give the number of proxies in front (e.g. 1) or their addresses (e.g. loopback, 10.0.0.0/8)`,
        ),
      )
    }
  })

  it('TRUST_PROXY: refuses subnets that together hold every IPv4 or IPv6 address, however they are written', () => {
    for (const value of [
      '0.0.0.0/1, 128.0.0.0/1',
      '::ffff:0:0/96',
      '::/1,8000::/1',
      'loopback,0.0.0.0/1,128.0.0.0/2,192.0.0.0/2',
    ]) {
      expect(() => readDashboardSettings({ TRUST_PROXY: value }), value).toThrow(
        new ConfigError(
          `TRUST_PROXY: ${JSON.stringify(value)} lets any client choose its own address (X-Forwarded-For); give the number of proxies in front (e.g. 1) or their addresses (e.g. loopback, 10.0.0.0/8)`,
        ),
      )
    }
    // A proxy's own public range is fine.
    for (const value of ['173.245.48.0/20, 2400:cb00::/32', 'loopback, uniquelocal, 10.0.0.0/255.0.0.0'])
      expect(readDashboardSettings({ TRUST_PROXY: value }).trustProxy, value).toBe(value)
  })

  it('REPORT_ONLY_LIMITS: resolves a tenant slug to its ID and a tier in any case, and refuses names that match nothing', async () => {
    const store = new MemoryKeyStore({ tenants: [tenant] })
    const tiers = Object.keys(DEFAULT_TIERS)
    const resolve = (value: string) => resolveReportOnlyLimits(readReportOnlyLimits(value), tiers, store)
    expect(await resolve('tenant:acme, tier:Starter')).toEqual({ tiers: ['starter'], tenants: [tenant.tenantId] })
    expect(await resolve(`tenant:${tenant.tenantId},tenant:acme,tier:team`)).toEqual({
      tiers: ['team'],
      tenants: [tenant.tenantId],
    })
    expect(await resolve('all')).toBe(true)
    expect(await resolve('')).toBe(false)
    await expect(resolve('tier:gold')).rejects.toThrow(
      new ConfigError('REPORT_ONLY_LIMITS: no tier named "gold"; the tiers are starter, team, business, enterprise'),
    )
    await expect(resolve('tenant:globex')).rejects.toThrow(
      new ConfigError('REPORT_ONLY_LIMITS: no tenant has the ID or slug "globex"'),
    )
  })

  it("METRICS_PORT: refuses the API's own port, and lets both take a free port (0)", () => {
    expect(() => checkMetricsPort(3000, 3000)).toThrow(
      new ConfigError('METRICS_PORT: must differ from PORT (both are 3000); the metrics are served apart from the API'),
    )
    expect(() => checkMetricsPort(0, 0)).not.toThrow()
    expect(() => checkMetricsPort(3000, 9464)).not.toThrow()
    expect(() => checkMetricsPort(3000, undefined)).not.toThrow()
  })

  it(
    'the server exits 1 with one line on stderr, never a stack trace, for each of them and for a port in use',
    { timeout: SIX_STARTS_MS },
    async () => {
      const taken = createServer()
      taken.listen(0, '127.0.0.1')
      await once(taken, 'listening')
      const takenPort = (taken.address() as { port: number }).port
      const db = tempDatabase()
      try {
        const cases: [Record<string, string>, string][] = [
          // What the start-up used to stop on with a stack trace.
          [
            { REPORT_ONLY_LIMITS: 'tier:Gold' },
            'saiku: REPORT_ONLY_LIMITS: no tier named "Gold"; the tiers are starter, team, business, enterprise',
          ],
          [{ PORT: '3999', METRICS_PORT: '3999' }, 'saiku: METRICS_PORT: must differ from PORT (both are 3999)'],
          [{ PORT: String(takenPort) }, `saiku: PORT: cannot listen on 127.0.0.1:${takenPort} (the port is in use)`],
          [
            { METRICS_PORT: String(takenPort) },
            `saiku: METRICS_PORT: cannot listen on 127.0.0.1:${takenPort} (the port is in use)`,
          ],
          [
            { TRUST_PROXY: 'loopbak' },
            'saiku: TRUST_PROXY: cannot read "loopbak" (invalid IP address: loopbak); give the number of proxies',
          ],
          // A URL the parser refuses: its error quoted the whole URL, password included.
          [
            { DATABASE_URL: 'postgres://saiku:hunter2secret@[bad/saiku' },
            'saiku: DATABASE_URL: expected a URL such as postgres://user:password@localhost:5432/saiku, got "postgres://…@[bad/saiku"',
          ],
        ]
        for (const [env, line] of cases) {
          const run = await startExpectingRefusal(
            { DATABASE_URL: db.databaseUrl, SAIKU_DATA_DIR: db.path, ...env },
            ONE_START_MS,
          )
          const what = JSON.stringify(env)
          expect(run.code, `${what}\n${run.stderr}`).toBe(1)
          expect(run.stderr.trim().split('\n'), what).toHaveLength(1)
          expect(run.stderr.trim(), what).toContain(line)
          expect(run.stderr, what).not.toMatch(/\n\s+at /)
          expect(run.stderr, what).not.toContain('hunter2secret')
        }
      } finally {
        taken.close()
        db.remove()
      }
    },
  )

  it(
    'the server starts with REPORT_ONLY_LIMITS naming the demo tenant by its slug, and a tier in capitals',
    { timeout: ONE_START_MS },
    async () => {
      const db = tempDatabase()
      const server = await startServer({
        DATABASE_URL: db.databaseUrl,
        REDIS_URL: '',
        SAIKU_DATA_DIR: db.path,
        REPORT_ONLY_LIMITS: 'tenant:acme,tier:Starter',
      })
      try {
        const res = await fetch(`${server.url}/me/tenant`, { headers: { authorization: `Bearer ${server.demoKey}` } })
        const { tenantId } = (await res.json()) as { tenantId: string }
        expect(server.logs.find((line) => line.msg === 'listening')).toMatchObject({
          reportOnlyLimits: { tiers: ['starter'], tenants: [tenantId] },
        })
      } finally {
        await server.stop()
        db.remove()
      }
    },
  )
})
