import { fileURLToPath } from 'node:url'
import Ajv2020 from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import type { Response } from 'express'
import { pino } from 'pino'
import request from 'supertest'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { MemoryKeyStore, type TenantUsage } from '@saiku/core'
import { createApp } from '../src/app.js'
import { createRenderer } from '../src/dashboard/shared/render.js'
import { openApiDocument } from '../src/openapi.js'

// A plan with day and month quotas: /me/usage, its OpenAPI schema, and the Usage page show both.

const metered = {
  tenantId: 't-metered',
  tenantSlug: 'metered',
  tier: 'enterprise',
  connectionName: 'w',
  // Anchored on the 15th: this period runs December 15th to January 15th.
  subscription: { status: 'active' as const, billingAnchor: new Date('2026-11-15T08:00:00Z') },
  limits: { perMinute: 3, perHour: 10, perDay: 20, perMonth: 100 },
}
const silent = pino({ level: 'silent' })

afterEach(() => {
  vi.useRealTimers()
})

describe('usage of a plan with day and month quotas', () => {
  it('GET /me/usage shows the day and the billing month, as the OpenAPI document says', async () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(Date.parse('2027-01-10T12:00:00Z'))
    const { app, auth, close } = createApp({ store: new MemoryKeyStore({ tenants: [metered] }), logger: silent })
    const { key } = await auth.authenticator.keys.create('t-metered', { label: 'agent' })
    try {
      expect((await request(app).get('/me/tenant').set('Authorization', `Bearer ${key}`)).status).toBe(200)
      const read = await request(app).get('/me/usage').set('Authorization', `Bearer ${key}`)
      expect(read.status).toBe(200)
      expect(read.body).toEqual({
        tenantId: 't-metered',
        limits: { perMinute: 3, perHour: 10, perDay: 20, perMonth: 100, monthStartDay: 15 },
        minute: { window: 'minute', quota: 3, used: 1, remaining: 2, resetSeconds: 60 },
        hour: { window: 'hour', quota: 10, used: 1, remaining: 9, resetSeconds: 3_600 },
        day: { window: 'day', quota: 20, used: 1, remaining: 19, resetSeconds: 12 * 3_600 },
        month: { window: 'month', quota: 100, used: 1, remaining: 99, resetSeconds: 4.5 * 86_400 },
      })
      expect(read.headers['ratelimit-policy']).toBe(
        '"minute";q=3;w=60, "hour";q=10;w=3600, "day";q=20;w=86400, "month";q=100;w=2678400',
      )
      const ajv = new Ajv2020.default({ strict: false, allErrors: true })
      addFormats.default(ajv)
      ajv.addSchema({ $id: 'openapi', components: openApiDocument.components })
      expect(ajv.validate({ $ref: 'openapi#/components/schemas/Usage' }, read.body), ajv.errorsText()).toBe(true)
    } finally {
      close()
    }
  })

  it('the Usage page shows a meter for each quota with the date it resets', () => {
    vi.useFakeTimers({ toFake: ['Date'] })
    vi.setSystemTime(Date.parse('2027-01-10T12:00:00Z'))
    const usage: TenantUsage = {
      tenantId: 't-metered',
      limits: metered.limits,
      minute: { window: 'minute', quota: 3, used: 1, remaining: 2, resetSeconds: 60 },
      hour: { window: 'hour', quota: 10, used: 1, remaining: 9, resetSeconds: 3_600 },
      day: { window: 'day', quota: 20, used: 1, remaining: 19, resetSeconds: 12 * 3_600 },
      month: { window: 'month', quota: 100, used: 100, remaining: 0, resetSeconds: 4.5 * 86_400 },
    }
    let html = ''
    const res = {
      req: { path: '/usage', query: {} },
      status: () => res,
      type: () => res,
      send: (body: string) => (html = body),
    }
    const { render } = createRenderer(fileURLToPath(new URL('../src/dashboard/views/', import.meta.url)))
    const resetsAt = (w: { resetSeconds: number }) => new Date(Date.now() + w.resetSeconds * 1000).toISOString()
    render(res as unknown as Response, 200, 'usage', {
      title: 'Usage',
      usage,
      unavailable: false,
      resetsAt,
      keys: [],
      range: '24h',
      ranges: [{ value: '24h', label: 'Last 24 hours' }],
      history: null,
      perKey: [],
    })
    for (const name of ['minute', 'hour', 'day', 'month']) expect(html).toContain(`id="meter-${name}"`)
    expect(html).toContain('This month')
    expect(html).toContain('0 left · resets <time datetime="2027-01-15T00:00:00.000Z">2027-01-15 00:00 UTC</time>')
    expect(html).toContain('19 left · resets <time datetime="2027-01-11T00:00:00.000Z">2027-01-11 00:00 UTC</time>')
    expect(html).toMatch(/aria-labelledby="meter-month" aria-valuetext="100 of 100 requests used" class="full"/)
  })

  it('the Overview page lists the day and month quotas beside the minute and hour, and none for a plan without', () => {
    const { render } = createRenderer(fileURLToPath(new URL('../src/dashboard/views/', import.meta.url)))
    const renderOverview = (limits: object) => {
      let html = ''
      const res = {
        req: { path: '/', query: {} },
        status: () => res,
        type: () => res,
        send: (body: string) => (html = body),
      }
      const view = { tenantId: 't', tenantSlug: 'metered', tier: 'enterprise', connectionName: 'w' }
      render(res as unknown as Response, 200, 'overview', { title: 'Overview', view, limits })
      return html
    }
    const quotas = renderOverview(metered.limits)
    expect(quotas).toContain('<dt>Per day (UTC)</dt><dd class="big">20</dd>')
    expect(quotas).toContain('<dt>Per billing month</dt><dd class="big">100</dd>')
    const plain = renderOverview({ perMinute: 60, perHour: 1_000 })
    expect(plain).toContain('<dt>Per hour</dt><dd class="big">1,000</dd>')
    expect(plain).not.toContain('Per day')
    expect(plain).not.toContain('Per billing month')
  })
})
