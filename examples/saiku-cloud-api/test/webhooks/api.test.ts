import Ajv2020 from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import { pino } from 'pino'
import request from 'supertest'
import { afterEach, describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.js'
import { openApiDocument } from '../../src/openapi.js'
import { createWebhookDelivery } from '../../src/webhooks/delivery.js'
import { createEndpointStore } from '../../src/webhooks/endpoints.js'
import { createEventQueue } from '../../src/webhooks/emitter.js'
import type { WebhookSql } from '../../src/webhooks/sql.js'
import { fakeClock, loopbackTransport, sqliteSetup, startReceiver } from './support.js'

const cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

interface Reply {
  method: string
  path: string
  status: number
  body: unknown
}

async function harness(options: { eventSql?: (sql: WebhookSql) => WebhookSql } = {}) {
  const clock = fakeClock(Date.now())
  const db = await sqliteSetup(clock.now)
  cleanups.push(db.close)
  const receiver = await startReceiver()
  cleanups.push(() => receiver.close())
  const endpoints = createEndpointStore(db.sql, db.policy, clock.now)
  const events = createEventQueue(options.eventSql?.(db.sql) ?? db.sql, clock.now, () => {})
  const { app, auth, close } = createApp({
    store: db.store,
    logger: pino({ level: 'silent' }),
    now: clock.now,
    settleIntervalMs: 0,
    cacheTtlMs: 0,
    webhooks: { endpoints, events },
  })
  cleanups.push(close)
  const keys = auth.authenticator.keys
  const mint = async (tenantId: string, permissions: string[]) =>
    (await keys.create(tenantId, { label: permissions.join(' ') || 'none', permissions })).key
  const writer = await mint(db.tenant.tenantId, ['webhooks:read', 'webhooks:write'])
  const reader = await mint(db.tenant.tenantId, ['webhooks:read'])
  const nothing = await mint(db.tenant.tenantId, ['keys:read'])
  const other = { ...db.tenant, tenantId: 'tenant-other', tenantSlug: 'other' }
  await db.store.putTenant(other)
  const outsider = await mint(other.tenantId, ['webhooks:read', 'webhooks:write'])
  const replies: Reply[] = []
  const call = async (method: string, path: string, key: string | null, body?: unknown) => {
    let pending = request(app)[method.toLowerCase() as 'get'](path)
    if (key !== null) pending = pending.set('authorization', `Bearer ${key}`)
    const response = await (body === undefined ? pending : pending.send(body as object))
    const parsed: unknown = response.status === 204 ? undefined : response.body
    replies.push({ method, path, status: response.status, body: parsed })
    return { status: response.status, body: parsed as Record<string, unknown> }
  }
  const delivery = createWebhookDelivery({
    sql: db.sql,
    policy: db.policy,
    transport: loopbackTransport({ localhost: ['127.0.0.1'] }),
    now: clock.now,
  })
  return { ...db, clock, receiver, endpoints, events, call, replies, writer, reader, nothing, outsider, delivery }
}

/** Checks each reply against the OpenAPI document's schema for its route and status. */
function checkAgainstOpenApi(replies: readonly Reply[]): void {
  const ajv = new Ajv2020.default({ strict: false, allErrors: true })
  addFormats.default(ajv)
  ajv.addSchema({ $id: 'openapi', components: openApiDocument.components })
  const paths = openApiDocument.paths as Record<
    string,
    Record<string, { responses: Record<string, { content?: { 'application/json': { schema: { $ref: string } } } }> }>
  >
  for (const reply of replies) {
    const template = reply.path
      .replace(
        /^\/me\/webhooks\/[^/]+\/deliveries\/[^/]+\/redeliver$/,
        '/me/webhooks/{endpointId}/deliveries/{deliveryId}/redeliver',
      )
      .replace(/^\/me\/webhooks\/[^/]+\/(rotate-secret|test|deliveries)$/, '/me/webhooks/{endpointId}/$1')
      .replace(/^\/me\/webhooks\/[^/]+$/, '/me/webhooks/{endpointId}')
    const response = paths[template]?.[reply.method.toLowerCase()]?.responses[String(reply.status)]
    expect(response, `${reply.method} ${template} ${reply.status} is documented`).toBeDefined()
    const schema = response!.content?.['application/json'].schema
    if (schema === undefined) expect(reply.body).toBeUndefined()
    else
      expect(
        ajv.validate({ $ref: `openapi${schema.$ref}` }, reply.body),
        `${reply.method} ${template}: ${ajv.errorsText()}`,
      ).toBe(true)
  }
}

describe('/me/webhooks', () => {
  it('adds, lists, rotates, tests, logs, redelivers and removes an endpoint, each answer as documented', async () => {
    const h = await harness()
    const url = `http://localhost:${h.receiver.port}/hook`
    const added = await h.call('POST', '/me/webhooks', h.writer, {
      url,
      events: ['key.revoked', 'key.created'],
      description: 'CRM sync',
    })
    expect(added.status).toBe(201)
    expect(added.body).toMatchObject({
      url,
      events: ['key.created', 'key.revoked'],
      description: 'CRM sync',
      state: 'active',
    })
    expect(added.body.secret).toMatch(/^whsec_/)
    const endpointId = added.body.endpointId as string

    const listed = await h.call('GET', '/me/webhooks', h.reader)
    expect(listed.status).toBe(200)
    expect(JSON.stringify(listed.body)).not.toContain(added.body.secret as string)
    expect((listed.body.endpoints as unknown[]).length).toBe(1)

    const rotated = await h.call('POST', `/me/webhooks/${endpointId}/rotate-secret`, h.writer)
    expect(rotated.status).toBe(200)
    expect(rotated.body.secret).not.toBe(added.body.secret)
    expect(rotated.body.previousSecretUntil).toBe(new Date(h.clock.now() + 86_400_000).toISOString())

    const tested = await h.call('POST', `/me/webhooks/${endpointId}/test`, h.writer)
    expect(tested.status).toBe(202)
    await h.delivery.runOnce()
    expect(JSON.parse(h.receiver.received[0]!.body)).toMatchObject({ type: 'webhook.test', data: { endpointId } })
    const log = await h.call('GET', `/me/webhooks/${endpointId}/deliveries`, h.reader)
    expect(log.status).toBe(200)
    const [first] = log.body.deliveries as {
      deliveryId: string
      state: string
      attempts: { status: number; durationMs: number }[]
    }[]
    expect(first!.deliveryId).toBe(tested.body.deliveryId)
    expect(first!.state).toBe('delivered')
    expect(first!.attempts).toEqual([
      { attempt: 1, attemptedAt: new Date(h.clock.now()).toISOString(), status: 200, durationMs: 0, error: null },
    ])
    const again = await h.call('POST', `/me/webhooks/${endpointId}/deliveries/${first!.deliveryId}/redeliver`, h.writer)
    expect(again.status).toBe(202)
    await h.delivery.runOnce()
    expect(h.receiver.received[1]!.headers['webhook-id']).toBe(h.receiver.received[0]!.headers['webhook-id'])

    expect((await h.call('DELETE', `/me/webhooks/${endpointId}`, h.writer)).status).toBe(204)
    expect((await h.call('DELETE', `/me/webhooks/${endpointId}`, h.writer)).status).toBe(404)
    expect((await h.call('GET', '/me/webhooks', h.reader)).body).toEqual({ endpoints: [] })
    checkAgainstOpenApi(h.replies)
  })

  it('refuses bad input with a clear 400, other permissions with 403, another tenant with 404, a disabled endpoint with 409', async () => {
    const h = await harness()
    const cases: [unknown, string][] = [
      [{ url: 'http://hooks.example/in' }, 'url must use https (http only for a loopback host).'],
      [{ url: 'https://169.254.169.254/latest' }, 'url must not point at a link-local address.'],
      [{ url: 'https://[fd00::1]/in' }, 'url must not point at a private address.'],
      [
        { url: 'https://hooks.example/in', events: ['key.exploded'] },
        expect.stringContaining('Unknown event type "key.exploded"'),
      ],
      [
        { url: 'https://hooks.example/in', events: [] },
        'events must be a non-empty array of event types, or ["*"] for all.',
      ],
      [
        { url: 'https://hooks.example/in', description: 'a\u202eb' },
        'description must not contain control or format characters.',
      ],
      [
        { url: 'https://hooks.example/in', secret: 'whsec_mine' },
        'Unknown field "secret"; expected url, events, description.',
      ],
      [{}, 'url is required.'],
      [[1], 'Expected a JSON object with url, events, description.'],
    ]
    for (const [body, message] of cases) {
      const refused = await h.call('POST', '/me/webhooks', h.writer, body)
      expect([refused.status, refused.body]).toEqual([400, { error: 'invalid_request', message }])
    }
    const added = await h.call('POST', '/me/webhooks', h.writer, { url: 'https://hooks.example/in' })
    const endpointId = added.body.endpointId as string
    expect((await h.call('POST', '/me/webhooks', h.reader, { url: 'https://hooks.example/in' })).status).toBe(403)
    expect((await h.call('GET', '/me/webhooks', h.nothing)).status).toBe(403)
    expect((await h.call('GET', '/me/webhooks', null)).status).toBe(401)
    expect((await h.call('DELETE', `/me/webhooks/${endpointId}`, h.reader)).status).toBe(403)
    for (const [method, path] of [
      ['DELETE', `/me/webhooks/${endpointId}`],
      ['POST', `/me/webhooks/${endpointId}/rotate-secret`],
      ['POST', `/me/webhooks/${endpointId}/test`],
      ['GET', `/me/webhooks/${endpointId}/deliveries`],
      ['POST', `/me/webhooks/${endpointId}/deliveries/x/redeliver`],
    ] as const) {
      const refused = await h.call(method, path, h.outsider)
      expect([refused.status, refused.body], `${method} ${path}`).toEqual([
        404,
        { error: 'not_found', message: expect.any(String) },
      ])
    }
    expect((await h.call('GET', '/me/webhooks', h.outsider)).body).toEqual({ endpoints: [] })
    expect((await h.call('PUT', '/me/webhooks', h.writer)).status).toBe(405)
    // Many at once cannot pass the limit of ten.
    const many = await Promise.all(
      Array.from({ length: 12 }, (_, index) =>
        h.call('POST', '/me/webhooks', h.writer, { url: `https://hooks.example/${index}` }),
      ),
    )
    expect(many.filter((reply) => reply.status === 201)).toHaveLength(9)
    // Disabled by a 410: tests and redeliveries are refused.
    await h.sql.run(`UPDATE saiku_webhook_endpoints SET state = 'disabled' WHERE endpoint_id = $1`, [endpointId])
    expect((await h.call('POST', `/me/webhooks/${endpointId}/test`, h.writer)).status).toBe(409)
    expect((await h.call('POST', `/me/webhooks/${endpointId}/deliveries/x/redeliver`, h.writer)).status).toBe(409)
    checkAgainstOpenApi(h.replies.filter((reply) => reply.status !== 405))
  })

  it('queues quota.threshold at 80 % and 100 % of a day quota once, and rate_limit.exceeded once for a run of refusals', async () => {
    const h = await harness()
    await h.store.putTenant({ ...h.tenant, limits: { perMinute: 5, perHour: 5, perDay: 5 } })
    const added = await h.call('POST', '/me/webhooks', h.writer, {
      url: `http://localhost:${h.receiver.port}/hook`,
      events: ['*'],
    })
    const endpointId = added.body.endpointId as string
    // One call went to adding: four more spend the day's five; the rest are refused.
    for (let index = 0; index < 12; index++) await h.call('GET', '/me/webhooks', h.reader)
    expect(await h.events.flush()).toBe(3)
    await h.delivery.runOnce()
    const types = h.receiver.received.map(
      (entry) => JSON.parse(entry.body) as { type: string; data: Record<string, unknown> },
    )
    expect(types.map((event) => [event.type, event.data.percent ?? null])).toEqual([
      ['quota.threshold', 80],
      ['quota.threshold', 100],
      ['rate_limit.exceeded', null],
    ])
    expect(types[0]!.data).toMatchObject({ window: 'day', used: 4, quota: 5 })
    // More refusals, a flush, a round: nothing new in this window.
    for (let index = 0; index < 5; index++) await h.call('GET', '/me/webhooks', h.reader)
    expect(await h.events.flush()).toBe(0)
    await h.delivery.runOnce()
    expect(h.receiver.received).toHaveLength(3)
    expect(endpointId).toMatch(/^ep_/)
  })

  it('answers requests that cross a quota threshold or are refused while the webhook tables hang: nothing waits on them', async () => {
    let hung = 0
    const hanging = (sql: WebhookSql): WebhookSql => ({
      ...sql,
      dialect: sql.dialect,
      table: (name) => sql.table(name),
      batch: () => {
        hung++
        return new Promise<number[]>(() => {})
      },
    })
    const h = await harness({ eventSql: hanging })
    await h.store.putTenant({ ...h.tenant, limits: { perMinute: 5, perHour: 5, perDay: 5 } })
    const statuses: number[] = []
    for (let index = 0; index < 8; index++) statuses.push((await h.call('GET', '/me/webhooks', h.reader)).status)
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429, 429])
    // The events wait in memory; a flush is what meets the hanging database, never a request.
    expect(hung).toBe(0)
    void h.events.flush()
    await expect.poll(() => hung).toBe(1)
  })
})
