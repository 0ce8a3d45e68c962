import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import request from 'supertest'
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest'
import type { Express } from 'express'
import { createKeyManager, type TenantAdminStore, type TenantRecord } from '@saiku/core'
import { SqliteKeyStore } from '@saiku/sqlite'
import { createApp } from '../src/app.js'
import { settleDueSubscriptions } from '../src/billing.js'
import { applyTenantChange } from '../src/tenant-settings.js'
import { openDashboardStore, readDashboardSettings, recordSettlement } from '../src/dashboard/index.js'
import type { DashboardStore } from '../src/dashboard/store/index.js'
import { sessionDigest } from '../src/dashboard/shared/secrets.js'

// The Billing API: plan changes, cancellation at period end, and the billing period, on a clock the test moves.

const dir = mkdtempSync(join(tmpdir(), 'saiku-billing-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let files = 0
const silent = pino({ level: 'silent' })

// Anchored on 31 January of a leap year: February's period starts on the 29th.
const ANCHOR = new Date('2028-01-31T10:00:00.000Z')
const FEB_10 = Date.UTC(2028, 1, 10, 12)
const FEB_29 = Date.UTC(2028, 1, 29)
const MAR_31 = Date.UTC(2028, 2, 31)

interface Harness {
  readonly app: Express
  readonly store: SqliteKeyStore
  readonly dashboard: DashboardStore
  readonly clock: { nowMs: number }
  call(method: 'get' | 'post' | 'delete', path: string, body?: unknown): request.Test
  readonly key: string
  readonly keyId: string
  close(): void
}

const opened: Harness[] = []
afterEach(() => {
  for (const harness of opened.splice(0)) harness.close()
})

function tenant(overrides: Partial<TenantRecord> = {}): TenantRecord {
  return {
    tenantId: 't-acme',
    tenantSlug: 'acme',
    tier: 'team',
    connectionName: 'w',
    subscription: { status: 'active', trialEndsAt: null, billingAnchor: ANCHOR },
    limits: null,
    ...overrides,
  }
}

/** A server on its own SQLite connection to `file` (another process, as far as the store can tell). */
async function serve(
  file: string,
  options: { seed?: TenantRecord; nowMs?: number; wrap?: (store: SqliteKeyStore) => TenantAdminStore } = {},
): Promise<Harness> {
  const store = new SqliteKeyStore(file, { watchIntervalMs: 0 })
  if (options.seed !== undefined) await store.putTenant(options.seed)
  const dashboard = await openDashboardStore(store)
  const clock = { nowMs: options.nowMs ?? FEB_10 }
  const { app, auth, close } = createApp({
    store: options.wrap?.(store) ?? store,
    logger: silent,
    now: () => clock.nowMs,
    settleIntervalMs: 0,
    cacheTtlMs: 0,
    dashboard: { store: dashboard, settings: readDashboardSettings({}) },
  })
  const { key, keyId } = await auth.authenticator.keys.create('t-acme', {
    label: 'billing',
    permissions: ['keys:read', 'billing:write'],
  })
  const harness: Harness = {
    app,
    store,
    dashboard,
    clock,
    key,
    keyId,
    call: (method, path, body) => {
      const req = request(app)[method](path).set('Authorization', `Bearer ${key}`)
      return body === undefined ? req : req.send(body as object)
    },
    close: () => {
      close()
      auth.authenticator.close()
      store.close()
    },
  }
  opened.push(harness)
  return harness
}

const freshFile = () => join(dir, `billing-${files++}.db`)

const actions = async (harness: Harness) =>
  (await harness.dashboard.listActivity('t-acme', 50)).map((event) => [event.action, event.target]).reverse()

/** The rows that the billing period's end wrote: who, what, on what, from where. */
const systemRows = async (dashboard: DashboardStore) =>
  (await dashboard.listActivity('t-acme', 50))
    .filter((event) => event.actorType === 'system')
    .map((event) => [event.actor, event.action, event.target, event.ip])

describe('GET /me/billing', () => {
  it('shows the tier, the anchor and the period that holds now: an anchor on the 31st starts February on the 29th', async () => {
    const server = await serve(freshFile(), { seed: tenant() })
    const billing = await server.call('get', '/me/billing')
    expect(billing.status).toBe(200)
    expect(billing.body).toEqual({
      status: 'active',
      trialEndsAt: null,
      trialAvailable: false,
      tier: 'team',
      billingAnchor: '2028-01-31T10:00:00.000Z',
      currentPeriodStart: '2028-01-31T00:00:00.000Z',
      currentPeriodEnd: '2028-02-29T00:00:00.000Z',
      scheduledTier: null,
      scheduledChangeAt: null,
      cancelAtPeriodEnd: false,
    })
    server.clock.nowMs = FEB_29
    expect((await server.call('get', '/me/billing')).body).toMatchObject({
      currentPeriodStart: '2028-02-29T00:00:00.000Z',
      currentPeriodEnd: new Date(MAR_31).toISOString(),
    })
  })

  it('starting a trial anchors the periods on its first day', async () => {
    const server = await serve(freshFile(), {
      seed: tenant({ subscription: { status: 'none', trialEndsAt: null } }),
      nowMs: Date.UTC(2028, 4, 31, 15),
    })
    const trial = await server.call('post', '/me/billing/trial')
    expect(trial.status).toBe(201)
    expect(trial.body).toMatchObject({
      status: 'trialing',
      billingAnchor: '2028-05-31T15:00:00.000Z',
      currentPeriodStart: '2028-05-31T00:00:00.000Z',
      currentPeriodEnd: '2028-06-30T00:00:00.000Z',
    })
    expect((await server.store.findTenant('t-acme'))?.subscription.billingAnchor).toEqual(
      new Date('2028-05-31T15:00:00.000Z'),
    )
  })
})

describe('POST /me/billing/plan', () => {
  it('upgrades at once and keeps the counts: 59 of Starter spent leaves 241 of Team this minute', async () => {
    const server = await serve(freshFile(), { seed: tenant({ tier: 'starter' }) })
    for (let i = 0; i < 58; i++) expect((await server.call('get', '/me/tenant')).status).toBe(200)
    // The 59th request of the minute is the plan change itself.
    const upgraded = await server.call('post', '/me/billing/plan', { tier: 'team' })
    expect(upgraded.status).toBe(200)
    expect(upgraded.body).toMatchObject({ tier: 'team', scheduledTier: null, scheduledChangeAt: null })
    const usage = await server.call('get', '/me/usage')
    expect(usage.body.minute).toMatchObject({ quota: 300, used: 59, remaining: 241 })
    expect(usage.body.hour).toMatchObject({ quota: 10_000, used: 59 })
    expect((await server.call('get', '/me/tenant')).body.tier).toBe('team')
    expect(await actions(server)).toEqual([['plan.changed', 'team']])
  })

  it('schedules a downgrade for the period end and applies it at exactly that instant, once', async () => {
    const file = freshFile()
    const server = await serve(file, { seed: tenant() })
    const scheduled = await server.call('post', '/me/billing/plan', { tier: 'starter' })
    expect(scheduled.status).toBe(200)
    expect(scheduled.body).toMatchObject({
      tier: 'team',
      scheduledTier: 'starter',
      scheduledChangeAt: '2028-02-29T00:00:00.000Z',
    })
    // The same downgrade again changes nothing.
    expect((await server.call('post', '/me/billing/plan', { tier: 'starter' })).body.scheduledTier).toBe('starter')
    expect((await server.call('get', '/me/usage')).body.minute.quota).toBe(300)
    server.clock.nowMs = FEB_29 - 1
    expect((await server.call('get', '/me/billing')).body.tier).toBe('team')

    // Another process, sharing the file: at the period's end, both apply it and it happens once.
    const other = await serve(file, { nowMs: FEB_29 })
    server.clock.nowMs = FEB_29
    const writes = () =>
      server.store.db
        .prepare("SELECT COUNT(*) AS n FROM saiku_changes WHERE kind = 'tenant' AND ref = 't-acme'")
        .get() as {
        n: number
      }
    const before = writes().n
    const settled = await Promise.all([
      settleDueSubscriptions(server.store, FEB_29, recordSettlement(server.dashboard, silent)),
      settleDueSubscriptions(other.store, FEB_29, recordSettlement(other.dashboard, silent)),
      server.call('get', '/me/billing'),
      other.call('get', '/me/billing'),
    ])
    // Two sweeps and two reads raced for it: one write applied it.
    expect(writes().n - before).toBe(1)
    expect([...settled[0], ...settled[1]].length).toBeLessThanOrEqual(1)
    for (const reply of [settled[2], settled[3]])
      expect(reply.body).toMatchObject({ tier: 'starter', scheduledTier: null, scheduledChangeAt: null })
    expect((await server.call('get', '/me/usage')).body.minute.quota).toBe(60)
    // Whichever of the four applied it recorded it, once, as the period end; the losers recorded nothing.
    expect(await actions(server)).toEqual([
      ['plan.change_scheduled', 'starter'],
      ['plan.changed', 'team → starter'],
    ])
    expect(await systemRows(server.dashboard)).toEqual([['billing period end', 'plan.changed', 'team → starter', null]])
    await server.call('get', '/me/billing')
    await settleDueSubscriptions(other.store, FEB_29 + 1, recordSettlement(other.dashboard, silent))
    expect(await systemRows(server.dashboard)).toHaveLength(1)
  })

  it('drops a scheduled downgrade when the plan is chosen again, or an upgrade comes before the period ends', async () => {
    const server = await serve(freshFile(), { seed: tenant() })
    await server.call('post', '/me/billing/plan', { tier: 'starter' })
    const kept = await server.call('post', '/me/billing/plan', { tier: 'team' })
    expect(kept.body).toMatchObject({ tier: 'team', scheduledTier: null, scheduledChangeAt: null })
    await server.call('post', '/me/billing/plan', { tier: 'starter' })
    const upgraded = await server.call('post', '/me/billing/plan', { tier: 'business' })
    expect(upgraded.body).toMatchObject({ tier: 'business', scheduledTier: null })
    server.clock.nowMs = FEB_29
    expect((await server.call('get', '/me/billing')).body.tier).toBe('business')
    // Asking for the plan the tenant is on, with nothing scheduled, changes nothing and records nothing.
    expect((await server.call('post', '/me/billing/plan', { tier: 'business' })).status).toBe(200)
    expect(await actions(server)).toEqual([
      ['plan.change_scheduled', 'starter'],
      ['plan.change_dropped', 'starter'],
      ['plan.change_scheduled', 'starter'],
      ['plan.changed', 'business'],
    ])
  })

  it('refuses a bad body with a JSON 400, enterprise with a 403, and a huge body with a 413', async () => {
    const server = await serve(freshFile(), { seed: tenant() })
    const names = 'tier must be one of starter, team, business.'
    for (const tier of [
      'gold',
      '__proto__',
      'constructor',
      'toString',
      '',
      'Team',
      42,
      null,
      { team: true },
      ['team'],
    ]) {
      const reply = await server.call('post', '/me/billing/plan', { tier })
      expect([reply.status, reply.body], JSON.stringify(tier)).toEqual([
        400,
        { error: 'invalid_request', message: names },
      ])
    }
    const proto = await server
      .call('post', '/me/billing/plan')
      .set('content-type', 'application/json')
      .send('{"__proto__": {"tier": "team"}}')
    expect(proto.status).toBe(400)
    expect(proto.body.error).toBe('invalid_request')
    const extra = await server.call('post', '/me/billing/plan', { tier: 'team', price: 0 })
    expect(extra.body).toEqual({ error: 'invalid_request', message: 'Unknown field "price"; expected tier.' })
    const notJson = await server
      .call('post', '/me/billing/plan')
      .set('content-type', 'application/json')
      .send('{"tier": team}')
    expect([notJson.status, notJson.body.error]).toEqual([400, 'invalid_request'])
    expect((await server.call('post', '/me/billing/plan')).status).toBe(400)
    const huge = await server.call('post', '/me/billing/plan', { tier: 'team', padding: 'x'.repeat(100_000) })
    expect([huge.status, huge.body.error]).toEqual([413, 'payload_too_large'])
    const enterprise = await server.call('post', '/me/billing/plan', { tier: 'enterprise' })
    expect(enterprise.status).toBe(403)
    expect(enterprise.body).toEqual({
      error: 'forbidden',
      message: 'The enterprise plan has custom limits agreed with sales: contact sales for it.',
    })
    expect((await server.store.findTenant('t-acme'))?.tier).toBe('team')
    expect(await actions(server)).toEqual([])
  })

  it('answers 402 without an active subscription or trial, and 403 to a tenant on custom limits', async () => {
    for (const subscription of [
      { status: 'none' as const, trialEndsAt: null },
      { status: 'canceled' as const, trialEndsAt: null },
      { status: 'past_due' as const, trialEndsAt: null },
      { status: 'trialing' as const, trialEndsAt: new Date(FEB_10 - 1) },
    ]) {
      const server = await serve(freshFile(), { seed: tenant({ subscription }) })
      const reply = await server.call('post', '/me/billing/plan', { tier: 'business' })
      const shown = subscription.status === 'trialing' ? 'trial_ended' : subscription.status
      expect([reply.status, reply.body], subscription.status).toEqual([
        402,
        {
          error: 'payment_required',
          message: `Changing plan requires an active subscription or trial; this subscription is ${shown}.`,
        },
      ])
      server.close()
    }
    const custom = await serve(freshFile(), {
      seed: tenant({ tier: 'enterprise', limits: { perMinute: 5_000, perHour: 100_000 } }),
    })
    const reply = await custom.call('post', '/me/billing/plan', { tier: 'team' })
    expect([reply.status, reply.body.error]).toEqual([403, 'forbidden'])
  })

  it('changes the plan of a trial at once, either way', async () => {
    const trial = { status: 'trialing' as const, trialEndsAt: new Date(FEB_10 + 86_400_000), billingAnchor: ANCHOR }
    const server = await serve(freshFile(), { seed: tenant({ subscription: trial }) })
    expect((await server.call('post', '/me/billing/plan', { tier: 'starter' })).body).toMatchObject({
      status: 'trialing',
      tier: 'starter',
      scheduledTier: null,
    })
  })

  it('of concurrent plan changes from one reading, in two processes, one wins and the others get a 409', async () => {
    const file = freshFile()
    // No request writes before every one has read: the race the conditional write must settle.
    let readers = 0
    let release: () => void = () => {}
    const allRead = new Promise<void>((resolve) => (release = resolve))
    const held = (store: SqliteKeyStore): TenantAdminStore =>
      new Proxy(store, {
        get(target, name, receiver) {
          if (name === 'replaceSubscription')
            return async (...args: Parameters<SqliteKeyStore['replaceSubscription']>) => {
              if (++readers >= 10) release()
              await allRead
              return target.replaceSubscription(...args)
            }
          const value = Reflect.get(target, name, receiver) as unknown
          return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
        },
      })
    const first = await serve(file, { seed: tenant(), wrap: held })
    const second = await serve(file, { wrap: held })
    readers = 0
    const tiers = ['business', 'starter']
    const replies = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        (i % 2 === 0 ? first : second).call('post', '/me/billing/plan', { tier: tiers[i % 2] }),
      ),
    )
    const won = replies.filter((reply) => reply.status === 200)
    expect(won).toHaveLength(1)
    for (const reply of replies.filter((r) => r.status !== 200))
      expect([reply.status, reply.body]).toEqual([
        409,
        {
          error: 'conflict',
          message: 'The subscription changed while this request was made; read it and try again.',
        },
      ])
    const stored = await first.store.findTenant('t-acme')
    expect({ tier: stored?.tier, scheduledTier: stored?.subscription.scheduledTier ?? null }).toEqual({
      tier: won[0]!.body.tier,
      scheduledTier: won[0]!.body.scheduledTier,
    })
  })
})

describe('POST and DELETE /me/billing/cancel', () => {
  it('cancels at the period end, can be undone before, and then the spec’s 402 applies', async () => {
    const server = await serve(freshFile(), { seed: tenant() })
    await server.call('post', '/me/billing/plan', { tier: 'starter' })
    const canceled = await server.call('post', '/me/billing/cancel')
    expect(canceled.status).toBe(200)
    // Canceling drops the scheduled downgrade: there is nothing to move to.
    expect(canceled.body).toMatchObject({
      status: 'active',
      cancelAtPeriodEnd: true,
      scheduledTier: null,
      scheduledChangeAt: '2028-02-29T00:00:00.000Z',
    })
    expect((await server.call('post', '/me/billing/cancel')).body.cancelAtPeriodEnd).toBe(true)
    const change = await server.call('post', '/me/billing/plan', { tier: 'business' })
    expect([change.status, change.body]).toEqual([
      409,
      {
        error: 'conflict',
        message:
          'This subscription ends on 2028-02-29: undo the cancellation (DELETE /me/billing/cancel) before changing plan.',
      },
    ])
    const undone = await server.call('delete', '/me/billing/cancel')
    expect(undone.body).toMatchObject({ status: 'active', cancelAtPeriodEnd: false, scheduledChangeAt: null })
    expect((await server.call('delete', '/me/billing/cancel')).status).toBe(200)
    await server.call('post', '/me/billing/cancel')

    server.clock.nowMs = FEB_29
    expect((await server.call('get', '/me/billing')).body).toMatchObject({
      status: 'canceled',
      cancelAtPeriodEnd: false,
      scheduledChangeAt: null,
    })
    const refused = await server.call('get', '/me/tenant')
    expect([refused.status, refused.body.error]).toEqual([402, 'payment_required'])
    const late = await server.call('delete', '/me/billing/cancel')
    expect([late.status, late.body]).toEqual([
      409,
      { error: 'conflict', message: 'There is no cancellation to undo: this subscription is canceled.' },
    ])
    expect((await server.call('post', '/me/billing/cancel')).status).toBe(409)
    expect(await actions(server)).toEqual([
      ['plan.change_scheduled', 'starter'],
      ['subscription.cancel_scheduled', '2028-02-29T00:00:00.000Z'],
      ['subscription.cancel_undone', null],
      ['subscription.cancel_scheduled', '2028-02-29T00:00:00.000Z'],
      ['subscription.canceled', 'team'],
    ])
    expect(await systemRows(server.dashboard)).toEqual([['billing period end', 'subscription.canceled', 'team', null]])
  })

  it('refuses to cancel a trial, and takes no body', async () => {
    const trial = { status: 'trialing' as const, trialEndsAt: new Date(FEB_10 + 86_400_000), billingAnchor: ANCHOR }
    const server = await serve(freshFile(), { seed: tenant({ subscription: trial }) })
    const reply = await server.call('post', '/me/billing/cancel')
    expect([reply.status, reply.body]).toEqual([
      409,
      { error: 'conflict', message: 'A trial ends by itself on 2028-02-11: nothing to cancel.' },
    ])
    expect((await server.call('post', '/me/billing/cancel', { now: true })).status).toBe(400)
  })

  it('needs billing:write', async () => {
    const server = await serve(freshFile(), { seed: tenant() })
    const { key } = await createKeyManager(server.store).create('t-acme', {
      label: 'reader',
      permissions: ['keys:read'],
    })
    for (const [method, path] of [
      ['post', '/me/billing/plan'],
      ['post', '/me/billing/cancel'],
      ['delete', '/me/billing/cancel'],
    ] as const) {
      const reply = await request(server.app)[method](path).set('Authorization', `Bearer ${key}`)
      expect([reply.status, reply.body.error], path).toEqual([403, 'forbidden'])
    }
  })
})

/** A store whose subscription writes wait until `count` of them are asked for: every racer reads first. */
function heldWrites(count: number) {
  let writers = 0
  let release: () => void = () => {}
  const allRead = new Promise<void>((resolve) => (release = resolve))
  const results: boolean[] = []
  const wrap = (store: SqliteKeyStore): TenantAdminStore =>
    new Proxy(store, {
      get(target, name, receiver) {
        if (name === 'replaceSubscription')
          return async (...args: Parameters<SqliteKeyStore['replaceSubscription']>) => {
            if (++writers >= count) release()
            await allRead
            const written = await target.replaceSubscription(...args)
            results.push(written)
            return written
          }
        const value = Reflect.get(target, name, receiver) as unknown
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
      },
    })
  return { wrap, results }
}

const dueSubscription = (due: { scheduledTier: string } | { cancelAtPeriodEnd: true }) =>
  tenant({
    subscription: {
      status: 'active',
      trialEndsAt: null,
      billingAnchor: ANCHOR,
      ...due,
      scheduledChangeAt: new Date(FEB_29),
    },
  })

describe('a change applied at the period end, in Activity', () => {
  for (const [name, due, action, target, after] of [
    ['a downgrade', { scheduledTier: 'starter' }, 'plan.changed', 'team → starter', { tier: 'starter' }],
    [
      'a cancellation',
      { cancelAtPeriodEnd: true as const },
      'subscription.canceled',
      'team',
      { tier: 'team', status: 'canceled' },
    ],
  ] as const) {
    it(`${name}: two sweeps and two reads, in two processes, all read it due; one write applies it and records it once`, async () => {
      const file = freshFile()
      const held = heldWrites(4)
      const first = await serve(file, { seed: dueSubscription(due), nowMs: FEB_29, wrap: held.wrap })
      const second = await serve(file, { nowMs: FEB_29, wrap: held.wrap })
      const [sweptFirst, sweptSecond, ...reads] = await Promise.all([
        settleDueSubscriptions(held.wrap(first.store), FEB_29, recordSettlement(first.dashboard, silent)),
        settleDueSubscriptions(held.wrap(second.store), FEB_29, recordSettlement(second.dashboard, silent)),
        first.call('get', '/me/billing'),
        second.call('get', '/me/billing'),
      ])
      // Four conditional writes from the same reading: one won.
      expect(held.results.filter(Boolean)).toHaveLength(1)
      expect(held.results.length).toBeGreaterThanOrEqual(4)
      expect([...sweptFirst, ...sweptSecond].length).toBeLessThanOrEqual(1)
      for (const read of reads) expect(read.body).toMatchObject({ ...after, scheduledChangeAt: null })
      expect(await systemRows(first.dashboard)).toEqual([['billing period end', action, target, null]])
      expect(await actions(second)).toEqual([[action, target]])
      // Later reads and sweeps find nothing due: still one row.
      await first.call('get', '/me/billing')
      await settleDueSubscriptions(second.store, FEB_29 + 60_000, recordSettlement(second.dashboard, silent))
      expect(await actions(first)).toEqual([[action, target]])
    })
  }

  for (const [due, label, target] of [
    [{ scheduledTier: 'starter' }, 'Plan changed', 'team → starter'],
    [{ cancelAtPeriodEnd: true }, 'Subscription ended', 'team'],
  ] as const) {
    it(`the Billing page applies it on its read, and the Activity page shows "${label}" by Billing (period end)`, async () => {
      // The dashboard's pages run on the real clock: a period that ended a minute ago.
      const endedMs = Date.now() - 60_000
      const server = await serve(freshFile(), {
        seed: tenant({
          subscription: {
            status: 'active',
            trialEndsAt: null,
            billingAnchor: ANCHOR,
            ...due,
            scheduledChangeAt: new Date(endedMs),
          },
        }),
      })
      const now = new Date()
      await server.dashboard.addMember({
        memberId: 'm-admin',
        tenantId: 't-acme',
        email: 'admin@example.com',
        role: 'admin',
        passwordHash: 'unused',
        createdAt: now,
      })
      await server.dashboard.createSession({
        sessionDigest: sessionDigest('session-1'),
        memberId: 'm-admin',
        csrfToken: 'csrf',
        createdAt: now,
        lastSeenAt: now,
      })
      const page = (path: string) => request(server.app).get(path).set('Cookie', 'saiku_session=session-1')
      const billing = await page('/billing')
      expect(billing.status).toBe(200)
      expect((await server.store.findTenant('t-acme'))?.subscription.scheduledChangeAt ?? null).toBeNull()
      await page('/billing')
      const activity = await page('/activity')
      expect(activity.status).toBe(200)
      const rows = [...activity.text.matchAll(/<tr>\s*<td data-label="When"[\s\S]*?<\/tr>/g)].map((row) =>
        [...row[0].matchAll(/<td data-label="(\w+)"[^>]*>([\s\S]*?)<\/td>/g)].map(
          ([, label, cell]) => `${label}: ${cell!.replace(/<[^>]+>/g, '').trim()}`,
        ),
      )
      expect(rows).toEqual([
        [
          expect.stringMatching(/^When: /),
          `Action: ${label}`,
          'Who: Billing (period end)',
          `Target: ${target}`,
          'Address: —',
        ],
      ])
    })
  }

  it('a recorder that rejects leaves the change applied and the sweep going', async () => {
    const store = new SqliteKeyStore(freshFile(), { watchIntervalMs: 0 })
    try {
      await store.putTenant(dueSubscription({ scheduledTier: 'starter' }))
      await store.putTenant({ ...dueSubscription({ cancelAtPeriodEnd: true }), tenantId: 't-two', tenantSlug: 'two' })
      let calls = 0
      const failing = async () => {
        calls++
        throw new Error('activity table unavailable')
      }
      expect((await settleDueSubscriptions(store, FEB_29, failing)).sort()).toEqual(['t-acme', 't-two'])
      expect(calls).toBe(2)
      expect((await store.findTenant('t-acme'))?.tier).toBe('starter')
      expect((await store.findTenant('t-two'))?.subscription.status).toBe('canceled')
    } finally {
      store.close()
    }
  })

  it('the dashboard’s recorder logs a failed write instead of rejecting', async () => {
    const lines: string[] = []
    const logger = pino({ level: 'error' }, { write: (line: string) => lines.push(line) })
    const broken = {
      recordActivity: () => Promise.reject(new Error('disk full')),
    } as unknown as DashboardStore
    await expect(
      recordSettlement(broken, logger)('t-acme', { action: 'plan.changed', target: 'team → starter' }, new Date()),
    ).resolves.toBeUndefined()
    expect(lines.map((line) => JSON.parse(line) as { msg: string; err: { message: string } })).toMatchObject([
      { msg: 'activity write failed', err: { message: 'disk full' } },
    ])
  })
})

describe('the settlement sweep', () => {
  it('moves a tenant whose period ended without anyone reading its billing', async () => {
    const due = tenant({
      subscription: {
        status: 'active',
        trialEndsAt: null,
        billingAnchor: ANCHOR,
        scheduledTier: 'starter',
        scheduledChangeAt: new Date(FEB_29),
      },
    })
    const store = new SqliteKeyStore(freshFile(), { watchIntervalMs: 0 })
    await store.putTenant(due)
    const clock = { nowMs: FEB_29 - 1 }
    const dashboard = await openDashboardStore(store)
    const { close } = createApp({
      store,
      logger: silent,
      now: () => clock.nowMs,
      settleIntervalMs: 10,
      dashboard: { store: dashboard, settings: readDashboardSettings({}) },
    })
    try {
      await new Promise((resolve) => setTimeout(resolve, 100))
      expect((await store.findTenant('t-acme'))?.tier).toBe('team')
      clock.nowMs = FEB_29
      await vi.waitFor(async () => expect((await store.findTenant('t-acme'))?.tier).toBe('starter'), {
        timeout: 10_000,
      })
      expect((await store.findTenant('t-acme'))?.subscription).toEqual({
        status: 'active',
        trialEndsAt: null,
        billingAnchor: ANCHOR,
      })
      // The sweep keeps ticking: the change is recorded once, as the period end's.
      await new Promise((resolve) => setTimeout(resolve, 100))
      expect(await systemRows(dashboard)).toEqual([['billing period end', 'plan.changed', 'team → starter', null]])
    } finally {
      close()
      store.close()
    }
  })
})

describe('saiku tenants set and the billing fields', () => {
  it('anchors a plan or trial started without an anchor on today, keeps one that is set, and an operator tier drops a scheduled downgrade', () => {
    const today = Date.UTC(2029, 6, 31, 8)
    const unpaid = tenant({ subscription: { status: 'none', trialEndsAt: null } })
    expect(applyTenantChange(unpaid, { subscription: 'active' }, today).subscription).toEqual({
      status: 'active',
      trialEndsAt: null,
      billingAnchor: new Date(today),
    })
    expect(applyTenantChange(tenant(), { subscription: 'trial' }, today).subscription.billingAnchor).toEqual(ANCHOR)
    expect(applyTenantChange(unpaid, { subscription: 'none' }, today).subscription.billingAnchor).toBeNull()
    const scheduled = tenant({
      subscription: { ...tenant().subscription, scheduledTier: 'starter', scheduledChangeAt: new Date(FEB_29) },
    })
    expect(applyTenantChange(scheduled, { tier: 'business' }, today).subscription).toEqual({
      status: 'active',
      trialEndsAt: null,
      billingAnchor: ANCHOR,
    })
  })
})
