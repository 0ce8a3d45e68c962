import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { freePort } from '@saiku/test-support/services'

const root = fileURLToPath(new URL('../..', import.meta.url))
const readme = readFileSync(`${root}/README.md`, 'utf8')

/** Starts an example's quick-start file until it prints its curl line; then calls it as that line does. */
async function runQuickStart(example: string) {
  const port = await freePort()
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port) }
  delete env.NODE_OPTIONS
  // As the example's `pnpm quick-start` runs it.
  const manifest = JSON.parse(readFileSync(`${root}/examples/${example}/package.json`, 'utf8')) as {
    scripts: Record<string, string>
  }
  const [node, ...args] = manifest.scripts['quick-start']!.split(' ')
  expect([node, args.at(-1)]).toEqual(['node', 'src/quick-start.ts'])
  const child = spawn(process.execPath, args, {
    cwd: `${root}/examples/${example}`,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exited = once(child, 'exit')
  let output = ''
  try {
    const curlLine = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no curl line within 60 s:\n${output}`)), 60_000)
      const look = (chunk: Buffer) => {
        output += chunk.toString()
        const line = /^curl .*$/m.exec(output)?.[0]
        if (line !== undefined) {
          clearTimeout(timer)
          resolve(line)
        }
      }
      child.stdout.on('data', look)
      child.stderr.on('data', look)
      void exited.then(([code]) => {
        clearTimeout(timer)
        reject(new Error(`the quick start exited (${String(code)}):\n${output}`))
      })
    })
    const [, url, key] = /^curl (\S+) -H "Authorization: Bearer (sk_live_\w+)"$/.exec(curlLine) ?? []
    expect(url, curlLine).toBe(`http://127.0.0.1:${port}/me/tenant`)
    const first = await fetch(url!, { headers: { authorization: `Bearer ${key!}` } })
    const withKey: { status: number; body: unknown } = { status: first.status, body: await first.json() }
    const refused = await fetch(url!)
    const withoutKey: Record<string, unknown> = {
      status: refused.status,
      type: refused.headers.get('content-type'),
      challenge: refused.headers.get('www-authenticate'),
      body: await refused.json(),
    }
    // The starter tier's 60 a minute: after the first, 59 more are admitted and the 61st refused.
    const later: number[] = []
    let retryAfter: string | null = null
    for (let i = 0; i < 60; i++) {
      const response = await fetch(url!, { headers: { authorization: `Bearer ${key!}` } })
      later.push(response.status)
      retryAfter = response.headers.get('retry-after')
      await response.arrayBuffer()
    }
    return {
      later,
      retryAfter,
      curlLine,
      withKey,
      withoutKey,
    }
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await exited
  }
}

// The README's first screen: the app a newcomer copies, run as written, answering as the README says it does.
describe.each(['express-basic', 'koa-basic'])("the README's quick start on %s", (example) => {
  it('answers GET /me/tenant with the seeded key, a JSON 401 without one, and a 429 past 60 a minute', async () => {
    const { curlLine, withKey, withoutKey, later, retryAfter } = await runQuickStart(example)
    expect(withKey).toEqual({
      status: 200,
      body: { tenantId: 't-acme', tenantSlug: 'acme', tier: 'starter', connectionName: 'warehouse' },
    })
    expect(withoutKey).toEqual({
      status: 401,
      type: 'application/json; charset=utf-8',
      challenge: 'Bearer realm="saiku"',
      body: { error: 'unauthorized', message: 'API key missing or invalid.' },
    })
    expect(later).toEqual([...Array<number>(59).fill(200), 429])
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1)
    // The README shows the line the app prints, with the key elided, and the body it gets.
    expect(readme).toContain(
      `${curlLine.replace(/:\d+\//, ':3000/').replace(/sk_live_\w+/, 'sk_live_…')}\n# ${JSON.stringify(withKey.body)}`,
    )
  }, 90_000)
})
