import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const exampleDir = fileURLToPath(new URL('..', import.meta.url))
export const repoRoot = fileURLToPath(new URL('../../..', import.meta.url))

/**
 * How much slower than an idle machine this one runs now: TEST_TIMEOUT_SCALE
 * when set, else the load average per core when the file is loaded, between 1
 * and 4. A suite that shares two cores with others starts a process in seconds
 * rather than a fraction of one.
 */
export const timeoutScale = ((): number => {
  const given = Number(process.env.TEST_TIMEOUT_SCALE)
  if (Number.isFinite(given) && given > 0) return given
  return Math.min(4, Math.max(1, loadavg()[0]! / availableParallelism()))
})()

/**
 * The timeout of a test (or hook) that starts `processes` processes (servers,
 * CLI runs, builds): 20 s for each, plus `workMs` for the rest of its work, all
 * times {@link timeoutScale}. A bound against a hang, never a timing check.
 */
export function processTimeout(processes: number, workMs = 20_000): number {
  return Math.ceil((processes * 20_000 + workMs) * timeoutScale)
}

export interface TempDir {
  readonly path: string
  readonly databaseUrl: string
  remove(): void
}

export function tempDatabase(): TempDir {
  const path = mkdtempSync(join(tmpdir(), 'saiku-e2e-'))
  return {
    path,
    databaseUrl: `sqlite:${join(path, 'saiku.db')}`,
    remove: () => rmSync(path, { recursive: true, force: true }),
  }
}

export interface RunningServer {
  readonly url: string
  /** The demo key, when this start seeded a fresh store. */
  readonly demoKey: string | undefined
  /** The curl line printed for the person at the terminal, if any. */
  readonly curlLine: string | undefined
  /** Every JSON log line so far. */
  readonly logs: Record<string, unknown>[]
  readonly stdout: () => string
  readonly stderr: () => string
  /** The process started: the server itself, or `pnpm` for `pnpm start`. */
  readonly pid: number
  /** Resolves when that process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Stops reading the server's stdout, as a log reader that stalled: the pipe fills up and stays full. */
  stopReadingStdout(): void
  /** SIGTERM to the process group; SIGKILL if it is still running 10 s later. */
  stop(): Promise<void>
}

/**
 * Starts the real server process on a free port and waits for its "listening"
 * log line. `command` is how a person would start it (`pnpm start`), the
 * direct node invocation (faster, same code), the production build (`dist`,
 * built by `pnpm build:server`), or the same store and limiter behind Koa (`koa`,
 * test/fixtures/koa-reference-server.ts).
 */
export async function startServer(
  env: Record<string, string>,
  command: 'pnpm start' | 'node' | 'koa' | 'dist' = 'node',
): Promise<RunningServer> {
  const direct = (dir: string, entry: string) =>
    [process.execPath, ['--conditions=@saiku/source', '--import', 'tsx', entry], dir] as const
  const [file, args, cwd] =
    command === 'pnpm start'
      ? (['pnpm', ['--silent', 'start'], repoRoot] as const)
      : command === 'dist'
        ? ([process.execPath, ['--enable-source-maps', 'dist/server.mjs'], exampleDir] as const)
        : command === 'koa'
          ? direct(repoRoot, 'test/fixtures/koa-reference-server.ts')
          : direct(exampleDir, 'src/server.ts')
  const child = spawn(file, [...args], {
    cwd,
    env: { ...process.env, PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  const exited = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }))
  let out = ''
  let err = ''
  const logs: Record<string, unknown>[] = []
  child.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString()
    const lines = out.split('\n')
    for (const line of lines.slice(logs.length, -1)) logs.push(JSON.parse(line) as Record<string, unknown>)
  })
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()))

  const deadline = Date.now() + 30_000 * timeoutScale
  while (!logs.some((line) => line.msg === 'listening')) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}:\n${out}\n${err}`)
    if (Date.now() > deadline) throw new Error(`server did not start:\n${out}\n${err}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  const url = logs.find((line) => line.msg === 'listening')!.url as string
  // The banner follows the log line on another stream, in several writes that may arrive
  // apart: wait for its last line, so a key is never read from half of it.
  await waitFor(
    () =>
      err.includes(url) && (/curl \S+ -H "Authorization: Bearer \w+"\n/.test(err) || err.includes('--label my-key\n')),
    5_000,
  ).catch(() => {})
  return {
    url,
    demoKey: err.match(/^\s+(sk_live_\w+)$/m)?.[1],
    curlLine: err.match(/^\s+(curl .+)$/m)?.[1],
    logs,
    stdout: () => out,
    stderr: () => err,
    pid: child.pid!,
    exited,
    stopReadingStdout: () => child.stdout.pause(),
    stop: () => stopProcess(child),
  }
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  process.kill(-child.pid!, 'SIGTERM')
  // A server that hangs on SIGTERM is the failure a test reports, not a reason for the run to hang too.
  const kill = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 10_000)
  await exited
  clearTimeout(kill)
}

export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

export interface CliResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs the operator CLI as `pnpm saiku …` does. */
export async function cli(args: string[], env: Record<string, string>): Promise<CliResult> {
  // As `pnpm saiku` runs it: the workspace packages resolve to their sources.
  const cliEnv = { ...process.env, NODE_OPTIONS: '--conditions=@saiku/source', ...env }
  const child = spawn(process.execPath, [join(exampleDir, 'bin/saiku.mjs'), ...args], {
    cwd: repoRoot,
    env: cliEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const [code] = (await once(child, 'exit')) as [number]
  return { code, stdout, stderr }
}

/** `cli` with `--json`, failing loudly on a non-zero exit. */
export async function cliJson<T>(args: string[], env: Record<string, string>): Promise<T> {
  const result = await cli([...args, '--json'], env)
  if (result.code !== 0) throw new Error(`saiku ${args.join(' ')} exited ${result.code}: ${result.stderr}`)
  return JSON.parse(result.stdout) as T
}
