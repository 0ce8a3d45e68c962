import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { processTimeout, startServer, tempDatabase, type RunningServer, type TempDir } from './helpers.js'

// The test starts a server process: bounds against a hang, scaled for a loaded machine.
vi.setConfig({ testTimeout: processTimeout(1), hookTimeout: processTimeout(2) })

const redisUrl = process.env.REDIS_URL

/** The value of one Prometheus sample whose labels include all of `labels`; 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const rest = line.slice(name.length)
    if (rest[0] !== '{' && rest[0] !== ' ') continue
    const body = rest[0] === '{' ? rest.slice(1, rest.lastIndexOf('}')) : ''
    const seen = Object.fromEntries([...body.matchAll(/(\w+)="([^"]*)"/g)].map((match) => [match[1], match[2]]))
    if (Object.entries(labels).every(([label, value]) => seen[label] === value))
      total += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return total
}

describe.skipIf(redisUrl === undefined)('the reference server on Redis: the limiter’s batch sizes', () => {
  let db: TempDir
  let server: RunningServer

  beforeAll(async () => {
    db = tempDatabase()
    server = await startServer({
      DATABASE_URL: db.databaseUrl,
      REDIS_URL: redisUrl!,
      SAIKU_DATA_DIR: db.path,
      METRICS_PORT: '0',
    })
  })
  afterAll(async () => {
    await server?.stop()
    db?.remove()
  })

  it('records each script call’s decisions in saiku_limiter_batch_size: every request once, several in one call', async () => {
    const metricsUrl = server.logs.find((line) => line.msg === 'metrics listening')?.url as string
    const key = server.demoKey!
    // Requests on many connections at once: the server reads several in one turn, and they share a script call.
    let sent = 0
    let text = ''
    for (let round = 0; round < 5; round++) {
      const statuses = await Promise.all(
        Array.from({ length: 40 }, () =>
          fetch(`${server.url}/me/tenant`, { headers: { authorization: `Bearer ${key}` } }).then((r) => r.status),
        ),
      )
      sent += statuses.length
      // Admitted or over the starter tier's minute: every one was a decision of the limiter.
      expect(statuses.every((status) => status === 200 || status === 429)).toBe(true)
      text = await (await fetch(metricsUrl)).text()
      if (sample(text, 'saiku_limiter_batch_size_bucket', { le: '1' }) < sample(text, 'saiku_limiter_batch_size_count'))
        break
    }
    expect(sample(text, 'saiku_limiter_batch_size_sum')).toBe(sent)
    const calls = sample(text, 'saiku_limiter_batch_size_count')
    expect(calls).toBeGreaterThan(0)
    expect(calls).toBeLessThan(sent)
    expect(sample(text, 'saiku_limiter_batch_size_bucket', { le: '128' })).toBe(calls)
  })
})
