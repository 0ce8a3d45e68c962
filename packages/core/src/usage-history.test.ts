// Usage over time: decisions counted into hourly buckets per tenant and key, written in batches.
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createAuthenticator } from './authenticator.js'
import { SaikuConfigError, SaikuInputError, SaikuStoreError } from './errors.js'
import { acme, request, setUp, tiers } from './quota-test-setup.js'
import { MemoryKeyStore, type KeyStore } from './store.js'
import { resolveTierTable } from './tiers.js'
import { HOUR_MS, UsageRecorder, type UsageBucket, type UsageStore } from './usage-history.js'

const T0 = Date.UTC(2026, 11, 1, 10, 15)

afterEach(() => {
  vi.useRealTimers()
})

const noTimer = { usageHistory: { flushIntervalMs: 0 } }

describe('usage history through the authenticator', () => {
  it('counts admitted, rate-limited and quota refusals per key and hour, without a store call on the request path', async () => {
    vi.useFakeTimers({ now: T0, toFake: ['Date'] })
    // daily: 2 a minute, 2 an hour, 2 a day.
    const { auth, store, send } = await setUp(acme(undefined, 'daily'), noTimer)
    const writes = vi.spyOn(store, 'addUsage')
    expect((await send()).ok).toBe(true)
    expect((await send()).ok).toBe(true)
    // The minute window and the day quota are both spent: the day (longer) binds, so it is the quota's.
    expect(await send()).toMatchObject({ status: 429 })
    expect(writes).not.toHaveBeenCalled()
    expect(auth.stats().pendingUsageBuckets).toBe(1)
    expect(await auth.flushUsageHistory()).toBe(1)
    const history = await auth.usageHistory('t-acme', { from: T0 - HOUR_MS, to: T0 + 1 })
    expect(history.points).toHaveLength(2)
    expect(history.points[1]).toEqual({
      start: new Date(Date.UTC(2026, 11, 1, 10)).toISOString(),
      admitted: 2,
      rateLimited: 0,
      quotaExceeded: 1,
      forbidden: 0,
      paymentRequired: 0,
    })
    expect(history.keys).toEqual([expect.objectContaining({ admitted: 2, quotaExceeded: 1 })])
    expect(history.keys[0]!.keyId).toBe((await store.listKeys('t-acme'))[0]!.keyId)
  })

  it('counts a minute-window 429 as rate limited, a 402 as payment required and a refused address as forbidden', async () => {
    vi.useFakeTimers({ now: T0, toFake: ['Date'] })
    const store = new MemoryKeyStore({
      tenants: [
        acme(undefined, 'bigger'),
        { ...acme(), tenantId: 't-none', tenantSlug: 'none', subscription: { status: 'none' } },
      ],
      tiers: resolveTierTable({ ...tiers, bigger: { perMinute: 1, perHour: 10, perDay: 100 } }),
    })
    const auth = createAuthenticator(store, {
      tiers: { ...tiers, bigger: { perMinute: 1, perHour: 10, perDay: 100 } },
      failedAuth: false,
      onError: false,
      ...noTimer,
    })
    const { key } = await auth.keys.create('t-acme', { label: 'a' })
    const { key: fenced } = await auth.keys.create('t-acme', { label: 'b', allowedAddresses: ['10.0.0.0/8'] })
    const { key: unpaid } = await auth.keys.create('t-none', { label: 'c' })
    expect((await auth.authenticate(request(key))).ok).toBe(true)
    expect(await auth.authenticate(request(key))).toMatchObject({ status: 429 })
    expect(await auth.authenticate(request(fenced))).toMatchObject({ status: 403 })
    expect(await auth.authenticate(request(unpaid))).toMatchObject({ status: 402 })
    // A 401 names no tenant: not counted.
    expect(await auth.authenticate(request('nope'))).toMatchObject({ status: 401 })
    const acmeHistory = await auth.usageHistory('t-acme', { from: T0, to: T0 + 1 })
    expect(acmeHistory.totals).toEqual({
      admitted: 1,
      rateLimited: 1,
      quotaExceeded: 0,
      forbidden: 1,
      paymentRequired: 0,
    })
    expect(acmeHistory.keys).toHaveLength(2)
    const none = await auth.usageHistory('t-none', { from: T0, to: T0 + 1, granularity: 'day' })
    expect(none.points).toEqual([expect.objectContaining({ start: '2026-12-01T00:00:00.000Z', paymentRequired: 1 })])
  })

  it('counts a report-only 429 as admitted: the request was served', async () => {
    vi.useFakeTimers({ now: T0, toFake: ['Date'] })
    const { auth, send } = await setUp(acme(undefined, 'daily'), { ...noTimer, reportOnly: { limits: true } })
    for (let i = 0; i < 3; i++) expect((await send()).ok).toBe(true)
    expect((await auth.usageHistory('t-acme', { from: T0, to: T0 + 1 })).totals.admitted).toBe(3)
  })

  it('reads a keyId alone, and by day with the hours summed into UTC days', async () => {
    vi.useFakeTimers({ now: T0, toFake: ['Date'] })
    const { auth, send, store } = await setUp(acme(undefined, 'bigger'), noTimer)
    await send()
    vi.setSystemTime(T0 + 3 * HOUR_MS)
    await send()
    await auth.flushUsageHistory()
    const keyId = (await store.listKeys('t-acme'))[0]!.keyId
    const byDay = await auth.usageHistory('t-acme', {
      from: new Date(T0 - DAY),
      to: new Date(T0 + DAY),
      granularity: 'day',
    })
    expect(byDay.points.map((point) => point.admitted)).toEqual([0, 2, 0])
    expect((await auth.usageHistory('t-acme', { from: T0, to: T0 + DAY, keyId })).totals.admitted).toBe(2)
    expect((await auth.usageHistory('t-acme', { from: T0, to: T0 + DAY, keyId: 'other' })).totals.admitted).toBe(0)
  })

  it('rejects a bad query with a SaikuInputError naming the field', async () => {
    const { auth } = await setUp(acme(), noTimer)
    await expect(auth.usageHistory('t-acme', { from: Number.NaN, to: 1 })).rejects.toMatchObject({ field: 'from' })
    await expect(auth.usageHistory('t-acme', { from: 10 * HOUR_MS, to: HOUR_MS })).rejects.toMatchObject({
      field: 'to',
    })
    await expect(auth.usageHistory('t-acme', { from: 0, to: 2_401 * HOUR_MS })).rejects.toBeInstanceOf(SaikuInputError)
    await expect(auth.usageHistory('t-acme', { from: 0, to: 1, granularity: 'week' as 'day' })).rejects.toMatchObject({
      field: 'granularity',
    })
  })

  it('throws at construction, naming the option, for a store without addUsage and readUsage', () => {
    const store = new MemoryKeyStore()
    const plain: KeyStore = {
      findKey: (id) => store.findKey(id),
      findTenant: (id) => store.findTenant(id),
      createKey: (record) => store.createKey(record),
      listKeys: (id) => store.listKeys(id),
      revokeKey: (id, at) => store.revokeKey(id, at),
    }
    expect(() => createAuthenticator(plain, { usageHistory: true })).toThrow(
      new SaikuConfigError(
        'usageHistory',
        'a store with addUsage and readUsage (this one lacks addUsage and readUsage), or usageHistory left out',
        true,
      ),
    )
    expect(() => createAuthenticator(plain, { usageHistory: { enabled: false } })).not.toThrow()
    expect(() => createAuthenticator(store, { usageHistory: { retentionDays: -1 } })).toThrow(
      /usageHistory.retentionDays/,
    )
    expect(() => createAuthenticator(store, { usageHistory: { maxPendingBuckets: 0 } })).toThrow(
      /usageHistory.maxPendingBuckets: expected a positive integer, got 0/,
    )
    expect(() => createAuthenticator(store, { usageHistory: { flushEvery: 1 } as never })).toThrow(/usageHistory/)
  })

  it('is off by default: nothing gathered, and reading it is a configuration error', async () => {
    const { auth, send } = await setUp(acme())
    await send()
    expect(auth.stats().pendingUsageBuckets).toBeNull()
    await expect(auth.usageHistory('t-acme', { from: 0, to: 1 })).rejects.toBeInstanceOf(SaikuConfigError)
    expect(await auth.flushUsageHistory()).toBe(0)
  })

  it('writes on its timer and at close', async () => {
    vi.useFakeTimers({ now: T0 })
    const { auth, send, store } = await setUp(acme(undefined, 'bigger'), { usageHistory: { flushIntervalMs: 5_000 } })
    const writes = vi.spyOn(store, 'addUsage')
    await send()
    await vi.advanceTimersByTimeAsync(5_000)
    expect(writes).toHaveBeenCalledTimes(1)
    await send()
    auth.close()
    await vi.advanceTimersByTimeAsync(0)
    expect(writes).toHaveBeenCalledTimes(2)
    expect(auth.stats().pendingUsageBuckets).toBe(0)
  })
})

const DAY = 86_400_000

/** A store whose writes fail while `down` is set. */
function flakyStore(): UsageStore & { down: boolean; rows: UsageBucket[] } {
  const memory = new MemoryKeyStore()
  return {
    down: false,
    rows: [],
    async addUsage(buckets) {
      if (this.down) throw new Error('connection refused')
      this.rows.push(...buckets.map((bucket) => ({ ...bucket })))
      await memory.addUsage(buckets)
    },
    readUsage: (query) => memory.readUsage(query),
    pruneUsage: (beforeMs) => memory.pruneUsage(beforeMs),
  }
}

describe('UsageRecorder', () => {
  const recorder = (store: UsageStore, errors: Error[], max = 100_000, now = () => T0) =>
    new UsageRecorder({
      store,
      maxPendingBuckets: max,
      flushIntervalMs: 0,
      retentionMs: 0,
      now,
      reportError: (e) => errors.push(e),
    })

  it('keeps a failed write for the next flush, reports it, and loses no count', async () => {
    const store = flakyStore()
    const errors: Error[] = []
    const usage = recorder(store, errors)
    usage.record('t', 'k', 'admitted')
    store.down = true
    await expect(usage.flush()).rejects.toBeInstanceOf(SaikuStoreError)
    expect(errors[0]!.message).toMatch(/usage history: writing 1 buckets failed; kept for the next flush/)
    usage.record('t', 'k', 'admitted')
    usage.record('t', 'k', 'rateLimited')
    store.down = false
    expect(await usage.flush()).toBe(1)
    expect(store.rows).toEqual([expect.objectContaining({ admitted: 2, rateLimited: 1 })])
    expect(usage.stats()).toEqual({ pendingBuckets: 0, droppedDecisions: 0, failedWrites: 1 })
  })

  it('holds at most maxPendingBuckets under 100,000 distinct keys while the store is down, and counts and reports what it drops', async () => {
    const store = flakyStore()
    store.down = true
    const errors: Error[] = []
    const usage = recorder(store, errors, 10_000)
    for (let i = 0; i < 100_000; i++) usage.record('t', `key-${i}`, 'admitted')
    expect(usage.stats().pendingBuckets).toBe(10_000)
    expect(usage.stats().droppedDecisions).toBe(90_000)
    await expect(usage.flush()).rejects.toBeInstanceOf(SaikuStoreError)
    // New keys while the failed batch is back: still within the bound.
    for (let i = 0; i < 100_000; i++) usage.record('t', `other-${i}`, 'admitted')
    expect(usage.stats().pendingBuckets).toBe(10_000)
    expect(usage.stats().droppedDecisions).toBe(190_000)
    expect(errors.map((error) => error.message)).toContain(
      'usage history: 90000 decisions were not counted: 10000 buckets (usageHistory.maxPendingBuckets) were waiting to be written',
    )
    store.down = false
    await usage.flush()
    // Kept: the earliest 10,000 keys' counts, every one written once.
    expect(store.rows).toHaveLength(10_000)
    expect(store.rows.every((row) => row.admitted === 1)).toBe(true)
    expect(usage.stats().pendingBuckets).toBe(0)
  })

  it('prunes buckets older than the retention after a write, at most once an hour', async () => {
    const store = flakyStore()
    const prunes = vi.spyOn(store, 'pruneUsage')
    let nowMs = T0
    const usage = new UsageRecorder({
      store,
      maxPendingBuckets: 10,
      flushIntervalMs: 0,
      retentionMs: 90 * DAY,
      now: () => nowMs,
      reportError: () => {},
    })
    // Nothing written, nothing pruned.
    await usage.flush()
    expect(prunes).not.toHaveBeenCalled()
    usage.record('t', 'k', 'admitted')
    await usage.flush()
    usage.record('t', 'k', 'admitted')
    await usage.flush()
    expect(prunes.mock.calls).toEqual([[T0 - 90 * DAY]])
    nowMs += HOUR_MS
    usage.record('t', 'k', 'admitted')
    await usage.flush()
    expect(prunes).toHaveBeenCalledTimes(2)
  })
})

describe('MemoryKeyStore usage window', () => {
  it('keeps at most maxUsageBuckets, forgetting the earliest written first', async () => {
    const store = new MemoryKeyStore({ maxUsageBuckets: 2 })
    const bucket = (hour: number): UsageBucket => ({
      tenantId: 't',
      keyId: 'k',
      hourStartMs: hour * HOUR_MS,
      admitted: 1,
      rateLimited: 0,
      quotaExceeded: 0,
      forbidden: 0,
      paymentRequired: 0,
    })
    await store.addUsage([bucket(1), bucket(2), bucket(3)])
    const rows = await store.readUsage({ tenantId: 't', fromMs: 0, toMs: 10 * HOUR_MS })
    expect(rows.map((row) => row.hourStartMs)).toEqual([2 * HOUR_MS, 3 * HOUR_MS])
    await expect(store.addUsage([{ ...bucket(1), admitted: -1 }])).rejects.toBeInstanceOf(SaikuInputError)
    expect(() => new MemoryKeyStore({ maxUsageBuckets: 0 })).toThrow(
      /maxUsageBuckets: expected a positive integer, got 0/,
    )
  })
})
