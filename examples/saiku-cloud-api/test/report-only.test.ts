import { Writable } from 'node:stream'
import { pino } from 'pino'
import request from 'supertest'
import { describe, expect, it } from 'vitest'
import { MemoryKeyStore } from '@saiku/core'
import { createApp } from '../src/app.js'
import { ConfigError } from '../src/config.js'
import { readReportOnlyLimits } from '../src/operations.js'

const tiny = {
  tenantId: 't-tiny',
  tenantSlug: 'tiny',
  tier: 'enterprise',
  connectionName: 'w',
  subscription: { status: 'active' as const },
  limits: { perMinute: 3, perHour: 10 },
}
const other = { ...tiny, tenantId: 't-other', tenantSlug: 'other' }

function memoryLogger() {
  const lines: Record<string, unknown>[] = []
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n'))
        if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>)
      done()
    },
  })
  return { logger: pino({ level: 'info', base: null }, stream), lines }
}

describe('REPORT_ONLY_LIMITS', () => {
  it('reads all, tiers and tenant IDs, and refuses anything else', () => {
    expect(readReportOnlyLimits(undefined)).toBe(false)
    expect(readReportOnlyLimits('')).toBe(false)
    expect(readReportOnlyLimits('all')).toBe(true)
    expect(readReportOnlyLimits('tier:starter, tenant:0b6f6c1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b')).toEqual({
      tiers: ['starter'],
      tenants: ['0b6f6c1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b'],
    })
    expect(() => readReportOnlyLimits('yes')).toThrow(ConfigError)
    expect(() => readReportOnlyLimits('tier:')).toThrow(
      'REPORT_ONLY_LIMITS: expected "all" or a list of tier:NAME and tenant:ID, got "tier:"',
    )
  })
})

describe('the reference server with report-only limits', () => {
  it('admits a tenant past its limits, logs each would-be refusal, and still enforces the others', async () => {
    const { logger, lines } = memoryLogger()
    const store = new MemoryKeyStore({ tenants: [tiny, other] })
    const { app, auth, close } = createApp({
      store,
      logger,
      reportOnlyLimits: { tenants: ['t-tiny'] },
      refusalLogIntervalMs: 3_600_000,
    })
    const { key, keyId } = await auth.authenticator.keys.create('t-tiny', { label: 'agent' })
    const { key: otherKey } = await auth.authenticator.keys.create('t-other', { label: 'agent' })
    for (let i = 0; i < 5; i++) {
      const res = await request(app).get('/me/tenant').set('Authorization', `Bearer ${key}`)
      expect(res.status).toBe(200)
      expect(res.headers['ratelimit']).toMatch(i < 3 ? new RegExp(`^"minute";r=${2 - i};`) : /^"minute";r=0;/)
    }
    for (let i = 0; i < 3; i++)
      expect((await request(app).get('/me/tenant').set('Authorization', `Bearer ${otherKey}`)).status).toBe(200)
    expect((await request(app).get('/me/tenant').set('Authorization', `Bearer ${otherKey}`)).status).toBe(429)
    close()
    expect(lines.filter((line) => line.msg === 'would refuse (report-only)')).toEqual([
      {
        level: 30,
        time: expect.any(Number),
        msg: 'would refuse (report-only)',
        reason: 'rate_limited',
        status: 429,
        path: '/me/tenant',
        tenantId: 't-tiny',
        keyId,
        ip: expect.any(String),
      },
    ])
    expect(lines.filter((line) => line.msg === 'would refuse (repeated, report-only)')).toMatchObject([
      { reason: 'rate_limited', count: 1 },
    ])
    expect(lines.filter((line) => line.msg === 'refused')).toMatchObject([
      { reason: 'rate_limited', tenantId: 't-other' },
    ])
    expect(
      lines.filter((line) => line.msg === 'request' && line.tenantId === 't-tiny' && line.status === 200),
    ).toHaveLength(5)
    expect((await auth.authenticator.usage('t-tiny'))?.minute).toMatchObject({ used: 3, remaining: 0 })
  })
})
