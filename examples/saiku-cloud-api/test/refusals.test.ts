import { Writable } from 'node:stream'
import { pino } from 'pino'
import request from 'supertest'
import { describe, expect, it } from 'vitest'
import { MemoryKeyStore, mintApiKey } from '@saiku/core'
import { createApp } from '../src/app.js'

const acme = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'w',
  subscription: { status: 'active' as const },
}

function memoryLogger() {
  const lines: Record<string, unknown>[] = []
  let bytes = 0
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      bytes += chunk.length
      for (const line of chunk.toString().split('\n'))
        if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>)
      done()
    },
  })
  return { logger: pino({ level: 'info', base: null }, stream), lines, bytes: () => bytes }
}

describe('the refusal log', () => {
  it('sums a flood of refusals up into a line per address and reason per interval, keeping the first of each in full', async () => {
    const { logger, lines, bytes } = memoryLogger()
    const { app, close } = createApp({
      store: new MemoryKeyStore({ tenants: [acme] }),
      logger,
      refusalLogIntervalMs: 3_600_000,
    })
    const flood = 400
    for (let i = 0; i < flood; i++) {
      await request(app)
        .get('/me/tenant')
        .set('Authorization', i % 2 === 0 ? `Bearer ${mintApiKey().key}` : 'Bearer garbage')
    }
    await request(app).get('/me/tenant')
    close()
    await new Promise((resolve) => setImmediate(resolve))
    const first = lines.filter((line) => line.msg === 'refused')
    const repeated = lines.filter((line) => line.msg === 'refused (repeated)')
    // unknown_key, malformed, too_many_failures, missing_credentials: one line each, then one sum each.
    expect(first.map((line) => line.reason).sort()).toEqual([
      'malformed',
      'missing_credentials',
      'too_many_failures',
      'unknown_key',
    ])
    expect(repeated.reduce((sum, line) => sum + (line.count as number), 0) + first.length).toBe(flood + 1)
    expect(lines.filter((line) => line.msg === 'request')).toHaveLength(0)
    expect(lines.length).toBeLessThanOrEqual(8)
    expect(bytes()).toBeLessThan(2_000)
  })

  it('still logs every admitted request', async () => {
    const { logger, lines } = memoryLogger()
    const store = new MemoryKeyStore({ tenants: [acme] })
    const { app, auth, close } = createApp({ store, logger })
    const { key } = await auth.authenticator.keys.create('t-acme', { label: 'agent' })
    for (let i = 0; i < 3; i++)
      expect((await request(app).get('/me/tenant').set('Authorization', `Bearer ${key}`)).status).toBe(200)
    close()
    expect(lines.filter((line) => line.msg === 'request' && line.status === 200)).toHaveLength(3)
  })
})
