import { afterEach, describe, expect, it } from 'vitest'
import { Webhook } from 'standardwebhooks'
import { createWebhookDelivery, DEFAULT_RETRY_DELAYS_MS } from '../../src/webhooks/delivery.js'
import type { WebhookSql } from '../../src/webhooks/sql.js'
import { fakeClock, loopbackTransport, sqliteSetup, startReceiver, type Receiver } from './support.js'

const cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

/** The database, or an outage of it while `down.now` is true. */
function failing(sql: WebhookSql, down: { now: boolean; batches?: number }): WebhookSql {
  const refuse = () => Promise.reject(new Error('connection refused (test outage)'))
  return {
    dialect: sql.dialect,
    table: (name) => sql.table(name),
    all: (text, values) => (down.now ? refuse() : sql.all(text, values)),
    run: (text, values) => (down.now ? refuse() : sql.run(text, values)),
    batch: (steps) => {
      if (down.batches !== undefined && down.batches > 0) {
        down.batches--
        return refuse()
      }
      return down.now ? refuse() : sql.batch(steps)
    },
  }
}

async function setup(
  options: { retryDelaysMs?: readonly number[]; events?: string[]; down?: { now: boolean; batches?: number } } = {},
) {
  const clock = fakeClock()
  const receiver = await startReceiver()
  cleanups.push(() => receiver.close())
  const db = await sqliteSetup(clock.now)
  cleanups.push(db.close)
  const transport = loopbackTransport({ localhost: ['127.0.0.1'] })
  const url = `http://localhost:${receiver.port}/hook`
  const { endpoint, secret } = await db.endpoints.add(db.tenant.tenantId, {
    url,
    ...(options.events === undefined ? {} : { events: options.events }),
  })
  const timeouts: (() => void)[] = []
  const errors: Error[] = []
  const delivery = createWebhookDelivery({
    sql: options.down === undefined ? db.sql : failing(db.sql, options.down),
    onError: (error) => errors.push(error),
    policy: db.policy,
    transport,
    now: clock.now,
    random: () => 0.5, // no jitter: the schedule is exact
    ...(options.retryDelaysMs === undefined ? {} : { retryDelaysMs: options.retryDelaysMs }),
    schedule: (callback) => {
      timeouts.push(callback)
      return () => timeouts.splice(timeouts.indexOf(callback) >>> 0, 1)
    },
  })
  return { ...db, clock, receiver, transport, endpoint, secret, delivery, timeouts, errors }
}

/** Verifies a received request with the scheme's reference library; returns the payload. */
function verify(receiver: Receiver, index: number, secret: string): { type: string; data: Record<string, unknown> } {
  const { body, headers } = receiver.received[index]!
  return new Webhook(secret).verify(body, {
    'webhook-id': String(headers['webhook-id']),
    'webhook-timestamp': String(headers['webhook-timestamp']),
    'webhook-signature': String(headers['webhook-signature']),
  }) as { type: string; data: Record<string, unknown> }
}

describe('webhook delivery', () => {
  it('delivers key.created, key.rotated and key.revoked from the outbox, signed so that the reference library verifies them', async () => {
    const t = await setup()
    const created = await t.keys.create(t.tenant.tenantId, { label: 'billing-sync' })
    const rotated = await t.keys.rotate(t.tenant.tenantId, created.keyId)
    await t.keys.revoke(t.tenant.tenantId, created.keyId)
    expect(await t.delivery.runOnce()).toEqual({ fannedOut: 3, attempted: 3 })
    expect(t.receiver.received).toHaveLength(3)
    // Webhook's clock is real; the timestamp is the fake clock's, so the tolerance check is what is turned off here.
    const payloads = t.receiver.received.map((_, index) => {
      const { headers } = t.receiver.received[index]!
      expect(headers['content-type']).toBe('application/json')
      expect(String(headers['webhook-id'])).toMatch(/^msg_/)
      return verifyAt(t, index)
    })
    expect(payloads.map((payload) => payload.type).sort()).toEqual(['key.created', 'key.revoked', 'key.rotated'])
    const byType = Object.fromEntries(payloads.map((payload) => [payload.type, payload.data]))
    expect(byType['key.created']).toEqual({
      keyId: created.keyId,
      label: 'billing-sync',
      environment: 'live',
      expiresAt: null,
    })
    expect(byType['key.rotated']).toMatchObject({ keyId: rotated!.keyId, previousKeyId: created.keyId })
    expect(byType['key.revoked']).toMatchObject({ keyId: created.keyId })
    const everything = t.receiver.received.map((entry) => entry.body).join('\n')
    expect(everything).not.toContain(created.key)
    expect(everything).not.toContain(rotated!.key)
    // Delivered: nothing more to send, then or later.
    t.clock.advance(48 * 3_600_000)
    expect(await t.delivery.runOnce()).toEqual({ fannedOut: 0, attempted: 0 })
    expect(t.receiver.received).toHaveLength(3)
    const log = await t.endpoints.deliveries(t.tenant.tenantId, t.endpoint.endpointId)
    expect(log.map((delivery) => delivery.state)).toEqual(['delivered', 'delivered', 'delivered'])
    expect(log.every((delivery) => delivery.attempts.length === 1 && delivery.attempts[0]!.status === 200)).toBe(true)
  })

  it('signs with both secrets for a day after a rotation, then with the new one alone', async () => {
    const t = await setup()
    const rotated = (await t.endpoints.rotateSecret(t.tenant.tenantId, t.endpoint.endpointId))!
    expect(rotated.secret).toMatch(/^whsec_/)
    expect(rotated.secret).not.toBe(t.secret)
    await t.endpoints.sendTestEvent(t.tenant.tenantId, t.endpoint.endpointId)
    await t.delivery.runOnce()
    expect(String(t.receiver.received[0]!.headers['webhook-signature']).split(' ')).toHaveLength(2)
    expect(verifyAt(t, 0, t.secret).type).toBe('webhook.test')
    expect(verifyAt(t, 0, rotated.secret).type).toBe('webhook.test')

    t.clock.advance(24 * 3_600_000 + 1)
    await t.endpoints.sendTestEvent(t.tenant.tenantId, t.endpoint.endpointId)
    await t.delivery.runOnce()
    expect(String(t.receiver.received[1]!.headers['webhook-signature']).split(' ')).toHaveLength(1)
    expect(verifyAt(t, 1, rotated.secret).type).toBe('webhook.test')
    expect(() => verifyAt(t, 1, t.secret)).toThrow()
  })

  it('sends only the events an endpoint asked for', async () => {
    const t = await setup({ events: ['key.revoked'] })
    const key = await t.keys.create(t.tenant.tenantId, { label: 'picky' })
    await t.keys.revoke(t.tenant.tenantId, key.keyId)
    await t.delivery.runOnce()
    expect(t.receiver.received.map((_, index) => verifyAt(t, index).type)).toEqual(['key.revoked'])
  })

  it('retries a failing receiver on the schedule, each attempt once, until a 2xx ends the retries', async () => {
    const t = await setup({ retryDelaysMs: [60_000, 600_000] })
    let failures = 2
    t.receiver.answer = (_req, res) => {
      if (failures-- > 0) res.writeHead(503).end('busy')
      else res.writeHead(204).end()
    }
    await t.keys.create(t.tenant.tenantId, { label: 'flaky' })
    await t.delivery.runOnce()
    expect(t.receiver.received).toHaveLength(1)
    t.clock.advance(59_999)
    await t.delivery.runOnce() // not due yet
    expect(t.receiver.received).toHaveLength(1)
    t.clock.advance(1)
    await t.delivery.runOnce()
    expect(t.receiver.received).toHaveLength(2)
    t.clock.advance(600_000)
    await t.delivery.runOnce()
    expect(t.receiver.received).toHaveLength(3)
    t.clock.advance(3_600_000)
    await t.delivery.runOnce()
    expect(t.receiver.received).toHaveLength(3)
    // The same event each time: one ID, which receivers deduplicate on.
    expect(new Set(t.receiver.received.map((entry) => entry.headers['webhook-id'])).size).toBe(1)
    const [logged] = await t.endpoints.deliveries(t.tenant.tenantId, t.endpoint.endpointId)
    expect(logged!.state).toBe('delivered')
    expect(logged!.attempts.map((attempt) => [attempt.attempt, attempt.status])).toEqual([
      [1, 503],
      [2, 503],
      [3, 204],
    ])
    expect((await t.endpoints.find(t.tenant.tenantId, t.endpoint.endpointId))!.state).toBe('active')
  })

  it('gives up after the last retry and marks the endpoint failing; a later delivery that succeeds clears it', async () => {
    const t = await setup({ retryDelaysMs: [1_000, 2_000] })
    t.receiver.answer = (_req, res) => res.writeHead(500).end()
    await t.keys.create(t.tenant.tenantId, { label: 'doomed' })
    for (let round = 0; round < 6; round++) {
      await t.delivery.runOnce()
      t.clock.advance(2_000)
    }
    expect(t.receiver.received).toHaveLength(3)
    const endpoint = (await t.endpoints.find(t.tenant.tenantId, t.endpoint.endpointId))!
    expect(endpoint.state).toBe('failing')
    expect(endpoint.stateReason).toMatch(/not accepted after 3 attempts \(last: HTTP 500\)/)
    const [logged] = await t.endpoints.deliveries(t.tenant.tenantId, t.endpoint.endpointId)
    expect(logged!.state).toBe('failed')
    expect(logged!.nextAttemptAt).toBeNull()

    t.receiver.answer = (_req, res) => res.writeHead(200).end()
    expect(await t.endpoints.redeliver(t.tenant.tenantId, logged!.deliveryId)).toBe(true)
    await t.delivery.runOnce()
    expect(t.receiver.received).toHaveLength(4)
    expect(t.receiver.received[3]!.headers['webhook-id']).toBe(t.receiver.received[0]!.headers['webhook-id'])
    expect((await t.endpoints.find(t.tenant.tenantId, t.endpoint.endpointId))!.state).toBe('active')
    // The log keeps every attempt, the redelivered one numbered after the others.
    const [redelivered] = await t.endpoints.deliveries(t.tenant.tenantId, t.endpoint.endpointId)
    expect(redelivered!.attempts.map((attempt) => [attempt.attempt, attempt.status])).toEqual([
      [1, 500],
      [2, 500],
      [3, 500],
      [4, 200],
    ])
  })

  it('a store outage delays events without losing them: rounds fail, report, and deliver once it is back', async () => {
    const down = { now: false }
    const t = await setup({ down })
    await t.keys.create(t.tenant.tenantId, { label: 'patient' })
    down.now = true
    await expect(t.delivery.runOnce()).rejects.toThrow('test outage')
    t.delivery.start()
    await expect.poll(() => t.errors.length, { timeout: 20_000 }).toBeGreaterThan(0)
    expect(t.receiver.received).toHaveLength(0)
    down.now = false
    await t.receiver.waitFor(1)
    await t.delivery.stop()
    expect(verifyAt(t, 0).type).toBe('key.created')
  })

  it('sends an attempt again, with the same ID, when its outcome could not be recorded (after its lease)', async () => {
    const down = { now: false, batches: 0 }
    const t = await setup({ down })
    await t.keys.create(t.tenant.tenantId, { label: 'twice' })
    await t.delivery.runOnce() // fans out (one batch), then sends
    expect(t.receiver.received).toHaveLength(1)
    const [pending] = await t.endpoints.deliveries(t.tenant.tenantId, t.endpoint.endpointId)
    expect(pending!.state).toBe('delivered')

    await t.endpoints.sendTestEvent(t.tenant.tenantId, t.endpoint.endpointId)
    down.batches = 1 // the record of the next attempt fails
    await t.delivery.runOnce()
    expect(t.receiver.received).toHaveLength(2)
    expect(t.errors.map((error) => error.message)).toEqual(['connection refused (test outage)'])
    t.clock.advance(30_000)
    await t.delivery.runOnce() // leased still: not sent again yet
    expect(t.receiver.received).toHaveLength(2)
    t.clock.advance(45_000)
    await t.delivery.runOnce()
    expect(t.receiver.received).toHaveLength(3)
    expect(t.receiver.received[2]!.headers['webhook-id']).toBe(t.receiver.received[1]!.headers['webhook-id'])
  })

  it('keeps retrying for about 24 hours by default, with jitter, before giving up', () => {
    const totalMs = DEFAULT_RETRY_DELAYS_MS.reduce((sum, ms) => sum + ms, 0)
    expect(totalMs).toBeGreaterThan(20 * 3_600_000)
    expect(totalMs).toBeLessThan(28 * 3_600_000)
    for (let index = 1; index < DEFAULT_RETRY_DELAYS_MS.length; index++)
      expect(DEFAULT_RETRY_DELAYS_MS[index]!).toBeGreaterThanOrEqual(DEFAULT_RETRY_DELAYS_MS[index - 1]!)
  })

  it('disables an endpoint that answers 410 Gone: no retry, and no later event is queued for it', async () => {
    const t = await setup()
    t.receiver.answer = (_req, res) => res.writeHead(410).end()
    await t.keys.create(t.tenant.tenantId, { label: 'gone' })
    await t.delivery.runOnce()
    const endpoint = (await t.endpoints.find(t.tenant.tenantId, t.endpoint.endpointId))!
    expect(endpoint.state).toBe('disabled')
    expect(endpoint.stateReason).toBe('The endpoint answered 410 Gone.')
    await t.keys.create(t.tenant.tenantId, { label: 'after' })
    t.clock.advance(48 * 3_600_000)
    expect(await t.delivery.runOnce()).toEqual({ fannedOut: 1, attempted: 0 })
    expect(t.receiver.received).toHaveLength(1)
  })

  it('does not follow a redirect: a 3xx is a failed attempt and the target is never asked', async () => {
    const t = await setup()
    t.receiver.answer = (req, res) => {
      if (req.url === '/hook') res.writeHead(302, { location: `http://127.0.0.1:${t.receiver.port}/elsewhere` }).end()
      else res.writeHead(200).end()
    }
    await t.keys.create(t.tenant.tenantId, { label: 'moved' })
    await t.delivery.runOnce()
    expect(t.receiver.received.map((entry) => entry.path)).toEqual(['/hook'])
    const [logged] = await t.endpoints.deliveries(t.tenant.tenantId, t.endpoint.endpointId)
    expect(logged!.state).toBe('pending')
    expect(logged!.attempts[0]).toMatchObject({ status: 302, error: 'redirect not followed' })
  })

  it('ends an attempt that gets no answer at its deadline (10 s by default) and retries it later', async () => {
    const t = await setup()
    t.receiver.answer = () => {} // never answers
    await t.keys.create(t.tenant.tenantId, { label: 'slow' })
    const round = t.delivery.runOnce()
    await t.receiver.waitFor(1)
    expect(t.timeouts).toHaveLength(1)
    t.timeouts[0]!() // the deadline passes
    expect(await round).toEqual({ fannedOut: 1, attempted: 1 })
    const [logged] = await t.endpoints.deliveries(t.tenant.tenantId, t.endpoint.endpointId)
    expect(logged!.attempts[0]).toMatchObject({ status: null, error: 'no answer within 10000 ms' })
    expect(logged!.state).toBe('pending')
    expect(logged!.nextAttemptAt!.getTime()).toBe(t.clock.now() + DEFAULT_RETRY_DELAYS_MS[0]!)
  })

  it('reads at most the response size cap of an answer that does not end', async () => {
    const t = await setup()
    let written = 0
    t.receiver.answer = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      const chunk = Buffer.alloc(16_384, 97)
      const pump = (): void => {
        while (!res.destroyed && written < 50_000_000 && res.write(chunk)) written += chunk.length
        if (!res.destroyed && written < 50_000_000) res.once('drain', pump)
      }
      pump()
    }
    await t.keys.create(t.tenant.tenantId, { label: 'chatty' })
    await t.delivery.runOnce()
    const [logged] = await t.endpoints.deliveries(t.tenant.tenantId, t.endpoint.endpointId)
    expect(logged!.state).toBe('delivered')
    expect(written).toBeLessThan(10_000_000)
  })
})

/** Verifies with the endpoint's first secret (or `secret`), with the library's clock set to the fake one. */
function verifyAt(
  t: { receiver: Receiver; secret: string; clock: { now: () => number } },
  index: number,
  secret = t.secret,
): { type: string; data: Record<string, unknown> } {
  const realNow = Date.now
  Date.now = t.clock.now
  try {
    return verify(t.receiver, index, secret)
  } finally {
    Date.now = realNow
  }
}
