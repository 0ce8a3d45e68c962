import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { ConfigError } from '../src/config.js'
import { readOperationsConfig } from '../src/operations.js'
import { processTimeout, startServer, tempDatabase, type RunningServer, type TempDir } from './helpers.js'

// Its tests start a server process: bounds against a hang, scaled for a loaded machine.
vi.setConfig({ testTimeout: processTimeout(1), hookTimeout: processTimeout(2) })

/** The value of one Prometheus sample whose labels include all of `labels`; 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string>): number {
  let total = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue
    const body = line.slice(name.length + 1, line.lastIndexOf('}'))
    const seen = Object.fromEntries([...body.matchAll(/(\w+)="([^"]*)"/g)].map((match) => [match[1], match[2]]))
    if (Object.entries(labels).every(([label, value]) => seen[label] === value))
      total += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return total
}

describe('METRICS_PORT', () => {
  it('is off by default, on loopback when set, and refused when it is no port', () => {
    expect(readOperationsConfig({}).metricsPort).toBeUndefined()
    expect(readOperationsConfig({ METRICS_PORT: '9464' })).toMatchObject({
      metricsPort: 9464,
      metricsHost: '127.0.0.1',
    })
    expect(() => readOperationsConfig({ METRICS_PORT: 'http' })).toThrow(ConfigError)
    expect(() => readOperationsConfig({ METRICS_PORT: '70000' })).toThrow(
      'METRICS_PORT: expected 0 to 65535, got "70000"',
    )
  })
})

describe('the Prometheus endpoint of the reference server', () => {
  let db: TempDir
  let server: RunningServer

  beforeAll(async () => {
    db = tempDatabase()
    server = await startServer({
      DATABASE_URL: db.databaseUrl,
      REDIS_URL: '',
      SAIKU_DATA_DIR: db.path,
      METRICS_PORT: '0',
    })
  })
  afterAll(async () => {
    await server?.stop()
    db?.remove()
  })

  it('serves on a loopback port of its own what the requests did', async () => {
    const metricsUrl = server.logs.find((line) => line.msg === 'metrics listening')?.url as string
    expect(metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/)
    expect(new URL(metricsUrl).port).not.toBe(new URL(server.url).port)
    const key = server.demoKey!
    for (let i = 0; i < 3; i++)
      expect((await fetch(`${server.url}/me/tenant`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200)
    expect((await fetch(`${server.url}/me/tenant`)).status).toBe(401)
    // Not shaped like an API key: the server's token verifier refuses it.
    expect((await fetch(`${server.url}/me/tenant`, { headers: { authorization: 'Bearer garbage' } })).status).toBe(401)
    // The API itself does not serve them.
    expect((await fetch(`${server.url}/metrics`)).status).toBe(401)

    const scraped = await fetch(metricsUrl)
    expect(scraped.status).toBe(200)
    expect(scraped.headers.get('content-type')).toMatch(/^text\/plain/)
    const text = await scraped.text()
    expect(
      sample(text, 'saiku_decisions_total', {
        saiku_status: '200',
        saiku_reason: 'admitted',
        saiku_tier: 'starter',
        saiku_enforced: 'true',
      }),
    ).toBe(3)
    expect(sample(text, 'saiku_decisions_total', { saiku_status: '401', saiku_reason: 'missing_credentials' })).toBe(2)
    expect(
      sample(text, 'saiku_decisions_total', {
        saiku_status: '401',
        saiku_reason: 'invalid_jwt',
        saiku_enforced: 'true',
      }),
    ).toBe(1)
    expect(sample(text, 'saiku_authentication_failures_total', { saiku_reason: 'invalid_jwt' })).toBe(1)
    expect(sample(text, 'saiku_authentication_failures_total', {})).toBe(3)
    expect(sample(text, 'saiku_cache_lookups_total', { saiku_cache: 'key', saiku_cache_result: 'hit' })).toBe(2)
    expect(sample(text, 'saiku_key_store_duration_count', { saiku_operation: 'findKey', saiku_outcome: 'ok' })).toBe(1)
    // Limits in this process's memory: nothing to wait on, so not timed (with REDIS_URL they are).
    expect(text).not.toContain('saiku_limiter_duration')
    expect(text).not.toContain('tenant_id')
    expect((await fetch(metricsUrl.replace('/metrics', '/other'))).status).toBe(404)
  })
})
