import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * The URL of a service the tests need, from the environment. In CI a missing or
 * wrong one fails the run; on a developer machine the tests that need it skip
 * with a message saying how to run them. (examples/saiku-cloud-api/test/services.ts
 * holds the same lines: that example is copied out alone, so it keeps its own.)
 */
export function serviceUrl(variable: 'REDIS_URL' | 'DATABASE_URL', schemes: readonly string[]): string | undefined {
  const value = process.env[variable]
  if (value !== undefined && schemes.some((scheme) => value.startsWith(scheme))) return value
  const wanted = `${variable}=${schemes[0]}…`
  if (process.env.CI === 'true')
    throw new Error(
      `CI must provide ${wanted} (see .ci/run); got ${value === undefined ? 'nothing' : JSON.stringify(value.split(':')[0])}`,
    )
  console.warn(`Skipping tests that need ${variable}: set ${wanted} to run them.`)
  return undefined
}

export const redisUrl: string | undefined = serviceUrl('REDIS_URL', ['redis://'])
export const postgresUrl: string | undefined = serviceUrl('DATABASE_URL', ['postgres://', 'postgresql://'])

/** Whether this machine can start Redis servers of its own (for fault tests); required in CI. */
export function hasRedisServerBinary(): boolean {
  const found = spawnSync('redis-server', ['--version']).status === 0
  if (!found && process.env.CI === 'true') throw new Error('CI must install redis-server (see .ci/run)')
  return found
}

export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

export interface OwnRedis {
  readonly url: string
  readonly port: number
  start(): Promise<void>
  stop(): Promise<void>
}

/** A Redis server of the test's own on a free loopback port, to stop, pause and restart at will. */
export async function ownRedis(): Promise<OwnRedis> {
  const port = await freePort()
  let child: ChildProcess | undefined
  const self: OwnRedis = {
    url: `redis://127.0.0.1:${port}`,
    port,
    async start() {
      child = spawn(
        'redis-server',
        [
          '--port',
          String(port),
          '--bind',
          '127.0.0.1',
          '--save',
          '',
          '--appendonly',
          'no',
          '--enable-debug-command',
          'yes',
        ],
        {
          stdio: 'ignore',
        },
      )
      const deadline = Date.now() + 10_000
      while (
        spawnSync('redis-cli', ['-p', String(port), 'ping'])
          .stdout?.toString()
          .trim() !== 'PONG'
      ) {
        if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not start`)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    },
    async stop() {
      if (child === undefined || child.exitCode !== null) return
      const exited = once(child, 'exit')
      child.kill('SIGKILL')
      await exited
      child = undefined
    },
  }
  await self.start()
  return self
}

export interface OwnRedisCluster {
  readonly nodes: { host: string; port: number }[]
  /** Kills one master (SIGKILL), as a crashed node. */
  killNode(index: number): Promise<void>
  stop(): Promise<void>
}

/** Three Redis masters on free loopback ports, joined into a cluster (no replicas). */
export async function ownRedisCluster(): Promise<OwnRedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'saiku-cluster-'))
  const ports = [await freePort(), await freePort(), await freePort()]
  const children = ports.map((port) =>
    spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, `nodes-${port}.conf`),
      ],
      {
        stdio: 'ignore',
      },
    ),
  )
  const stop = async () => {
    await Promise.all(
      children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return
        const exited = once(child, 'exit')
        child.kill('SIGKILL')
        await exited
      }),
    )
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    for (const port of ports) {
      const deadline = Date.now() + 10_000
      while (
        spawnSync('redis-cli', ['-p', String(port), 'ping'])
          .stdout?.toString()
          .trim() !== 'PONG'
      ) {
        if (Date.now() > deadline) throw new Error(`cluster node ${port} did not start`)
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    }
    const created = spawnSync('redis-cli', [
      '--cluster',
      'create',
      ...ports.map((p) => `127.0.0.1:${p}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ])
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stderr?.toString()}`)
    const deadline = Date.now() + 10_000
    while (
      !spawnSync('redis-cli', ['-p', String(ports[0]), 'cluster', 'info'])
        .stdout?.toString()
        .includes('cluster_state:ok')
    ) {
      if (Date.now() > deadline) throw new Error('the cluster did not reach cluster_state:ok')
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  } catch (error) {
    await stop()
    throw error
  }
  const killNode = async (index: number) => {
    const child = children[index]!
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill('SIGKILL')
    await exited
  }
  return { nodes: ports.map((port) => ({ host: '127.0.0.1', port })), killNode, stop }
}
