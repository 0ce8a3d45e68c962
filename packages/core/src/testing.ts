/**
 * `@saiku/core/testing`: the store conformance suite. Run it against your own
 * KeyStore in vitest:
 *
 *   describeKeyStoreConformance('my store', async () => ({ store, addTenant, close }))
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { digestApiKey } from './keys.js'
import { createKeyManager, type KeyManager } from './management.js'
import { createAuthenticator } from './authenticator.js'
import type { KeyStore, TenantAdminStore, TenantRecord } from './store.js'
import type { UsageBucket, UsageCounts } from './usage-history.js'

export interface FakeClock {
  now(): number
  set(time: number | Date): void
  advance(ms: number): void
  restore(): void
}

/**
 * Fakes `Date` only: timers and sockets keep running, so servers under test still
 * answer, while key expiry, trials, caches and the memory limiter's windows all
 * move with the clock. Drive window edges with it instead of sleeping.
 */
export function installFakeClock(start: number | Date = Date.now()): FakeClock {
  vi.useFakeTimers({ toFake: ['Date'] })
  vi.setSystemTime(start)
  return {
    now: () => Date.now(),
    set: (time) => vi.setSystemTime(time),
    advance: (ms) => vi.setSystemTime(Date.now() + ms),
    restore: () => vi.useRealTimers(),
  }
}

export interface KeyStoreHarness {
  readonly store: KeyStore
  /** Writes a tenant the way your system does (the KeyStore interface only reads them). */
  addTenant(tenant: TenantRecord): Promise<void>
  close?(): Promise<void>
}

export function conformanceTenant(overrides: Partial<TenantRecord> = {}): TenantRecord {
  const id = crypto.randomUUID()
  return {
    tenantId: id,
    tenantSlug: `tenant-${id.slice(0, 8)}`,
    tier: 'team',
    connectionName: 'production-warehouse',
    subscription: { status: 'active', trialEndsAt: null },
    limits: null,
    ...overrides,
  }
}

const swapCase = (text: string): string =>
  [...text].map((char) => (char === char.toUpperCase() ? char.toLowerCase() : char.toUpperCase())).join('')

const bearer = (key: string) => ({ headers: { authorization: `Bearer ${key}` }, method: 'GET', url: '/me/tenant' })

export function describeKeyStoreConformance(name: string, createHarness: () => Promise<KeyStoreHarness>): void {
  describe(`KeyStore conformance: ${name}`, () => {
    let harness: KeyStoreHarness
    let store: KeyStore
    let keys: KeyManager
    let tenant: TenantRecord

    beforeEach(async () => {
      harness = await createHarness()
      store = harness.store
      keys = createKeyManager(store)
      tenant = conformanceTenant()
      await harness.addTenant(tenant)
    })
    afterEach(async () => {
      await harness.close?.()
    })

    it('answers null for an unknown key ID and an unknown tenant', async () => {
      expect(await store.findKey('AAAAAAAAAAAA'), 'findKey(unknown key ID) must return null').toBeNull()
      expect(await store.findTenant(crypto.randomUUID()), 'findTenant(unknown tenant ID) must return null').toBeNull()
    })

    it('returns the tenant as written, with dates as Dates', async () => {
      const trialEndsAt = new Date('2031-01-02T03:04:05.000Z')
      const enterprise = conformanceTenant({
        tier: 'enterprise',
        limits: { perMinute: 5_000, perHour: 200_000 },
        subscription: { status: 'trialing', trialEndsAt },
      })
      await harness.addTenant(enterprise)
      const found = await store.findTenant(enterprise.tenantId)
      expect(found, 'findTenant did not find a tenant that addTenant wrote').not.toBeNull()
      expect(found, 'findTenant returned other fields than addTenant wrote').toMatchObject({
        tenantId: enterprise.tenantId,
        tenantSlug: enterprise.tenantSlug,
        tier: 'enterprise',
        connectionName: 'production-warehouse',
        limits: { perMinute: 5_000, perHour: 200_000 },
      })
      expect(found?.subscription.status, 'findTenant returned another subscription.status than was written').toBe(
        'trialing',
      )
      expect(
        found?.subscription.trialEndsAt,
        'findTenant must return subscription.trialEndsAt as a Date',
      ).toBeInstanceOf(Date)
      expect(
        found?.subscription.trialEndsAt?.getTime(),
        'findTenant returned another subscription.trialEndsAt than was written',
      ).toBe(trialEndsAt.getTime())
    })

    it('stores a digest and never the secret', async () => {
      const created = await keys.create(tenant.tenantId, { label: 'production-agent', permissions: ['keys:write'] })
      const record = await store.findKey(created.keyId)
      expect(record, 'findKey did not find a key that createKey wrote').not.toBeNull()
      expect(record!.secretDigest, 'findKey returned another secretDigest than createKey was given').toBe(
        digestApiKey(created.key),
      )
      expect(record, 'findKey returned other fields than createKey was given').toMatchObject({
        keyId: created.keyId,
        tenantId: tenant.tenantId,
        label: 'production-agent',
        environment: 'live',
        permissions: ['keys:write'],
        revokedAt: null,
        expiresAt: null,
      })
      expect(record!.createdAt, 'findKey must return createdAt as a Date').toBeInstanceOf(Date)
      expect(JSON.stringify(record), 'findKey returned the secret itself: stores keep only its digest').not.toContain(
        created.key.slice(21),
      )
    })

    it('round-trips expiry and labels with quotes, markup and emoji', async () => {
      const expiresAt = new Date(Date.now() + 86_400_000)
      const label = 'agent "alpha" <script>alert(1)</script> 🚀'
      const created = await keys.create(tenant.tenantId, { label, expiresAt, environment: 'test' })
      const record = await store.findKey(created.keyId)
      expect(record?.label, 'findKey returned another label than was written (quotes, markup or emoji lost)').toBe(
        label,
      )
      expect(record?.environment, 'findKey returned another environment than was written').toBe('test')
      expect(record?.expiresAt?.getTime(), 'findKey returned another expiresAt than was written').toBe(
        expiresAt.getTime(),
      )
    })

    it('rejects a second key with an existing key ID', async () => {
      const created = await keys.create(tenant.tenantId, { label: 'first' })
      const record = await store.findKey(created.keyId)
      await expect(
        store.createKey({ ...record!, secretDigest: digestApiKey('other') }),
        'createKey accepted a second key with an existing key ID',
      ).rejects.toThrow()
      expect(
        (await store.findKey(created.keyId))?.secretDigest,
        'createKey with an existing key ID overwrote the first key',
      ).toBe(record!.secretDigest)
    })

    it("lists only the tenant's live keys, oldest first, without secrets or digests", async () => {
      const other = conformanceTenant()
      await harness.addTenant(other)
      // Each key a second after the one before: keys made in one millisecond have no order to check.
      let createdMs = Date.now() - 60_000
      const ordered = createKeyManager(store, { now: () => (createdMs += 1_000) })
      // The second key is older than the first one written: an insertion-ordered list fails.
      const second = await ordered.create(tenant.tenantId, { label: 'second' })
      createdMs -= 3_000
      const first = await ordered.create(tenant.tenantId, { label: 'first' })
      createdMs += 3_000
      const foreign = await ordered.create(other.tenantId, { label: 'foreign' })
      const revoked = await ordered.create(tenant.tenantId, { label: 'revoked' })
      await store.revokeKey(revoked.keyId, new Date())

      const listed = await store.listKeys(tenant.tenantId)
      expect(
        listed.map((key) => key.keyId),
        "listKeys must return exactly the tenant's unrevoked keys, ordered by createdAt, oldest first",
      ).toEqual([first.keyId, second.keyId])
      expect(listed[0], 'listKeys returned other fields than createKey was given').toMatchObject({
        label: 'first',
        environment: 'live',
        permissions: [],
        lastUsedAt: null,
      })
      const text = JSON.stringify(listed)
      for (const created of [first, second, foreign]) {
        expect(text, 'listKeys returned a secret').not.toContain(created.key)
        expect(text, 'listKeys returned a digest: summaries carry no secretDigest').not.toContain(
          digestApiKey(created.key),
        )
      }
      expect(
        listed.every((key) => !('secretDigest' in key)),
        'listKeys returned records with a secretDigest field',
      ).toBe(true)
      expect(await store.listKeys(crypto.randomUUID()), 'listKeys(unknown tenant) must return []').toEqual([])
    })

    it('revokes once, and reports unknown or already revoked keys', async () => {
      const created = await keys.create(tenant.tenantId, { label: 'old' })
      // A time of its own, an hour back and not on a whole second: a store that writes its own clock fails.
      const at = new Date(Date.now() - 3_600_000 - 123 - (Date.now() % 1_000))
      expect(await store.revokeKey(created.keyId, at), 'revokeKey of a live key must return true').toBe(true)
      expect(
        await store.revokeKey(created.keyId, new Date()),
        'revokeKey of an already revoked key must return false',
      ).toBe(false)
      expect(
        await store.revokeKey('AAAAAAAAAAAA', new Date()),
        'revokeKey of an unknown key ID must return false',
      ).toBe(false)
      const revoked = await store.findKey(created.keyId)
      expect(revoked?.revokedAt, 'findKey returned a revoked key without revokedAt').toBeInstanceOf(Date)
      expect(
        revoked?.revokedAt?.getTime(),
        'findKey returned another revokedAt than revokeKey was given: store the revokedAt argument, not your own clock, and a second revokeKey must not move it',
      ).toBe(at.getTime())
    })

    it('records last use when it supports it', async () => {
      const created = await keys.create(tenant.tenantId, { label: 'used' })
      if (store.recordKeyUse === undefined) return
      const usedAt = new Date('2030-05-06T07:08:09.000Z')
      await store.recordKeyUse(created.keyId, usedAt)
      const [listed] = await store.listKeys(tenant.tenantId)
      expect(listed?.lastUsedAt?.getTime(), 'listKeys did not return the lastUsedAt that recordKeyUse wrote').toBe(
        usedAt.getTime(),
      )
      // Processes flush their uses late and out of order: an older use never moves lastUsedAt back.
      await store.recordKeyUse(created.keyId, new Date(usedAt.getTime() - 60_000))
      const [after] = await store.listKeys(tenant.tenantId)
      expect(
        after?.lastUsedAt?.getTime(),
        'recordKeyUse with an older usedAt moved lastUsedAt backwards: keep the latest',
      ).toBe(usedAt.getTime())
    })

    it('keeps allowed addresses, as written, when it has updateKey', async () => {
      if (store.updateKey === undefined) return
      const allowedAddresses = ['203.0.113.0/24', '2001:db8::/32', '198.51.100.7']
      const created = await keys.create(tenant.tenantId, { label: 'office', allowedAddresses })
      expect(
        (await store.findKey(created.keyId))?.allowedAddresses,
        'findKey returned other allowedAddresses than createKey was given',
      ).toEqual(allowedAddresses)
      const [listed] = await store.listKeys(tenant.tenantId)
      expect(listed?.allowedAddresses, 'listKeys returned other allowedAddresses than createKey was given').toEqual(
        allowedAddresses,
      )
      const plain = await keys.create(tenant.tenantId, { label: 'anywhere' })
      const stored = (await store.findKey(plain.keyId))?.allowedAddresses ?? []
      expect(stored, 'findKey of a key created without allowedAddresses must return none (null, [] or absent)').toEqual(
        [],
      )
      await expect(
        store.createKey({
          ...(await store.findKey(plain.keyId))!,
          keyId: 'AAAAAAAAAAAB',
          secretDigest: digestApiKey('other'),
          allowedAddresses: ['10.0.0.1/8'],
        }),
        'createKey accepted allowedAddresses with bits set past the prefix: check them with allowedAddressesProblem',
      ).rejects.toThrow()
    })

    it('changes a label, allowed addresses and expiry with updateKey, each alone, when it has one', async () => {
      if (store.updateKey === undefined) return
      const created = await keys.create(tenant.tenantId, { label: 'before', permissions: ['keys:read'] })
      const expiresAt = new Date(Date.now() + 3_600_000 + 123)
      expect(await store.updateKey(created.keyId, { label: 'after' }), 'updateKey of a live key must return true').toBe(
        true,
      )
      expect(await store.findKey(created.keyId), 'updateKey({ label }) did not change the label alone').toMatchObject({
        label: 'after',
        permissions: ['keys:read'],
        expiresAt: null,
      })
      expect(await store.updateKey(created.keyId, { allowedAddresses: ['10.0.0.0/8'] })).toBe(true)
      expect(await store.updateKey(created.keyId, { expiresAt })).toBe(true)
      const updated = await store.findKey(created.keyId)
      expect(updated, 'updateKey changed another field than it was given').toMatchObject({
        label: 'after',
        allowedAddresses: ['10.0.0.0/8'],
      })
      expect(updated?.expiresAt?.getTime(), 'findKey returned another expiresAt than updateKey wrote').toBe(
        expiresAt.getTime(),
      )
      expect(await store.updateKey(created.keyId, { allowedAddresses: null, expiresAt: null })).toBe(true)
      const cleared = await store.findKey(created.keyId)
      expect(
        cleared?.allowedAddresses ?? [],
        'updateKey({ allowedAddresses: null }) must lift the restriction',
      ).toEqual([])
      expect(cleared?.expiresAt, 'updateKey({ expiresAt: null }) must lift the expiry').toBeNull()
      for (const changes of [
        { label: '' },
        { allowedAddresses: ['10.0.0.1/33'] },
        { expiresAt: new Date(Number.NaN) },
      ]) {
        await expect(
          store.updateKey(created.keyId, changes),
          `updateKey accepted ${JSON.stringify(changes)}: check changes with keyChangesProblem`,
        ).rejects.toThrow()
      }
      expect((await store.findKey(created.keyId))?.label, 'a refused updateKey changed the key').toBe('after')
      expect(
        await store.updateKey('AAAAAAAAAAAA', { label: 'x' }),
        'updateKey of an unknown key ID must return false',
      ).toBe(false)
      await store.revokeKey(created.keyId, new Date())
      expect(
        await store.updateKey(created.keyId, { label: 'revived' }),
        'updateKey of a revoked key must return false',
      ).toBe(false)
      expect((await store.findKey(created.keyId))?.label, 'updateKey changed a revoked key').toBe('after')
    })

    it('serves the whole pipeline: an allowlist set later refuses other addresses at once, when it has updateKey', async () => {
      if (store.updateKey === undefined) return
      const auth = createAuthenticator(store, { cache: { ttlMs: 3_600_000 } })
      try {
        const created = await auth.keys.create(tenant.tenantId, { label: 'office' })
        const from = (ip: string) => ({ ...bearer(created.key), ip })
        expect(await auth.authenticate(from('192.0.2.1')), 'a fresh key was refused').toMatchObject({ ok: true })
        await auth.keys.update(tenant.tenantId, created.keyId, { allowedAddresses: ['192.0.2.2'] })
        expect(
          await auth.authenticate(from('192.0.2.1')),
          'a key was still admitted from an address its new allowlist leaves out: updateKey must be announced',
        ).toMatchObject({ ok: false, status: 403 })
        expect(await auth.authenticate(from('192.0.2.2')), 'a key was refused from its allowed address').toMatchObject({
          ok: true,
        })
      } finally {
        auth.close()
      }
    })

    it('finds key IDs case-sensitively (not by a case-insensitive collation)', async () => {
      const created = await keys.create(tenant.tenantId, { label: 'cased' })
      const swapped = swapCase(created.keyId)
      // Base62 IDs without a letter are all but impossible (10^12 of 62^12); such an ID has no other case to test.
      if (swapped === created.keyId) return
      expect(
        await store.findKey(swapped),
        `findKey('${swapped}') found the key '${created.keyId}': keyId must match case-sensitively`,
      ).toBeNull()
      const record = await store.findKey(created.keyId)
      await store.createKey({
        ...record!,
        keyId: swapped,
        label: 'swapped case',
        secretDigest: digestApiKey('swapped'),
      })
      expect(
        (await store.findKey(swapped))?.label,
        'createKey rejected or merged a keyId that differs from another only in case: keyId must be unique case-sensitively',
      ).toBe('swapped case')
      expect(await store.revokeKey(created.keyId, new Date()), 'revokeKey of a live key must return true').toBe(true)
      expect(
        (await store.findKey(swapped))?.revokedAt,
        'revokeKey revoked another key whose keyId differs only in case: keyId must match case-sensitively',
      ).toBeNull()
    })

    it("keeps a tenant's own day and month quotas exactly, and adds none to a tenant that set none", async () => {
      const quotas = { perMinute: 50, perHour: 2_000, perDay: 20_000, perMonth: 300_000 }
      const own = conformanceTenant({ tier: 'enterprise', limits: quotas })
      const bursts = conformanceTenant({ tier: 'enterprise', limits: { perMinute: 50, perHour: 2_000 } })
      await harness.addTenant(own)
      await harness.addTenant(bursts)
      expect(
        (await store.findTenant(own.tenantId))?.limits,
        "findTenant must return a tenant's own limits with their perDay and perMonth as written",
      ).toEqual(quotas)
      expect(
        (await store.findTenant(bursts.tenantId))?.limits,
        'findTenant must return limits without perDay or perMonth (not even null) when the tenant set none',
      ).toStrictEqual({ perMinute: 50, perHour: 2_000 })
      expect(
        await store.findTenant(tenant.tenantId),
        'a tenant without limits must read back with limits: null',
      ).toEqual(tenant)

      const admin = store as Partial<TenantAdminStore>
      if (admin.putTenant === undefined || admin.findTenantBySlug === undefined || admin.listTenants === undefined)
        return
      expect(
        (await admin.findTenantBySlug(own.tenantSlug))?.limits,
        "findTenantBySlug must return a tenant's own perDay and perMonth",
      ).toEqual(quotas)
      const listed = await admin.listTenants()
      expect(
        listed.find((t) => t.tenantId === own.tenantId)?.limits,
        "listTenants must return a tenant's own perDay and perMonth",
      ).toEqual(quotas)
      expect(
        listed.find((t) => t.tenantId === bursts.tenantId)?.limits,
        'listTenants must return limits without perDay or perMonth when the tenant set none',
      ).toStrictEqual({ perMinute: 50, perHour: 2_000 })

      await admin.putTenant({ ...own, limits: { perMinute: 50, perHour: 2_000, perMonth: 100_000 } })
      expect(
        (await store.findTenant(own.tenantId))?.limits,
        'putTenant replacing the limits must drop a perDay the new limits no longer set and write the new perMonth',
      ).toStrictEqual({ perMinute: 50, perHour: 2_000, perMonth: 100_000 })
    })

    it('replaces a subscription only while it is still the one read, and nothing else of the tenant', async () => {
      const admin = store as Partial<TenantAdminStore>
      if (admin.replaceSubscription === undefined) return
      const unpaid = conformanceTenant({ subscription: { status: 'none', trialEndsAt: null } })
      await harness.addTenant(unpaid)
      const trial = { status: 'trialing' as const, trialEndsAt: new Date('2030-05-20T00:00:00.000Z') }
      const results = await Promise.all(
        Array.from({ length: 10 }, () => admin.replaceSubscription!(unpaid.tenantId, unpaid.subscription, trial)),
      )
      expect(
        results.filter(Boolean),
        'replaceSubscription: of ten concurrent calls from the same subscription, exactly one must return true',
      ).toHaveLength(1)
      expect(
        await store.findTenant(unpaid.tenantId),
        'replaceSubscription changed other fields than subscription, or wrote another subscription than given',
      ).toEqual({ ...unpaid, subscription: trial })
      expect(
        await admin.replaceSubscription(unpaid.tenantId, unpaid.subscription, { status: 'active', trialEndsAt: null }),
        'replaceSubscription must return false when the expected subscription is no longer the stored one',
      ).toBe(false)
      expect(
        await admin.replaceSubscription(crypto.randomUUID(), unpaid.subscription, trial),
        'replaceSubscription of an unknown tenantId must return false',
      ).toBe(false)
      expect(
        await admin.replaceSubscription(unpaid.tenantId, trial, { status: 'active', trialEndsAt: null }),
        'replaceSubscription must return true when the expected subscription (with its trialEndsAt) is the stored one',
      ).toBe(true)
      expect(
        (await store.findTenant(unpaid.tenantId))?.subscription,
        'findTenant returned another subscription than replaceSubscription wrote',
      ).toEqual({ status: 'active', trialEndsAt: null })
    })

    it('keeps the billing fields, and replaceSubscription compares every one and moves the tier only with a plan', async () => {
      const admin = store as Partial<TenantAdminStore>
      const billingAnchor = new Date('2031-01-31T09:30:00.000Z')
      const scheduledChangeAt = new Date('2031-03-31T00:00:00.000Z')
      const downgrading = conformanceTenant({
        subscription: {
          status: 'active',
          trialEndsAt: null,
          billingAnchor,
          scheduledTier: 'starter',
          scheduledChangeAt,
        },
      })
      await harness.addTenant(downgrading)
      const found = await store.findTenant(downgrading.tenantId)
      expect(
        found?.subscription.billingAnchor?.getTime(),
        'findTenant must return subscription.billingAnchor as the Date written',
      ).toBe(billingAnchor.getTime())
      // A store that only reads tenants needs the anchor (monthly quotas start on its day); one that changes
      // subscriptions keeps every billing field.
      if (admin.replaceSubscription === undefined) return
      expect(found?.subscription.scheduledTier, 'findTenant must return subscription.scheduledTier').toBe('starter')
      expect(
        found?.subscription.scheduledChangeAt?.getTime(),
        'findTenant must return subscription.scheduledChangeAt as the Date written',
      ).toBe(scheduledChangeAt.getTime())
      const canceling = {
        status: 'active' as const,
        trialEndsAt: null,
        billingAnchor,
        cancelAtPeriodEnd: true,
        scheduledChangeAt,
      }
      // Each reading differs from the stored subscription in one field only: none may win.
      const stale = [
        { ...downgrading.subscription, billingAnchor: null },
        { ...downgrading.subscription, scheduledTier: null, scheduledChangeAt: null },
        { ...downgrading.subscription, scheduledTier: 'team' },
        { ...downgrading.subscription, scheduledChangeAt: new Date('2031-02-28T00:00:00.000Z') },
      ]
      for (const reading of stale) {
        expect(
          await admin.replaceSubscription(downgrading.tenantId, reading, canceling),
          `replaceSubscription must compare every subscription field: it accepted ${JSON.stringify(reading)}`,
        ).toBe(false)
      }
      const results = await Promise.all(
        Array.from({ length: 10 }, () =>
          admin.replaceSubscription!(downgrading.tenantId, downgrading.subscription, canceling),
        ),
      )
      expect(
        results.filter(Boolean),
        'of ten concurrent cancellations from one reading, exactly one must win',
      ).toHaveLength(1)
      const canceled = await store.findTenant(downgrading.tenantId)
      expect(canceled?.subscription.cancelAtPeriodEnd, 'findTenant must return cancelAtPeriodEnd: true').toBe(true)
      expect(canceled?.subscription.scheduledTier ?? null, 'replaceSubscription must clear scheduledTier').toBeNull()
      expect(canceled?.tier, 'replaceSubscription without a plan must leave the tier alone').toBe('team')

      // A plan change: the tier moves with the subscription, only while it is still the one read.
      const upgraded = { status: 'active' as const, trialEndsAt: null, billingAnchor }
      expect(
        await admin.replaceSubscription(downgrading.tenantId, canceled!.subscription, upgraded, {
          expectedTier: 'starter',
          tier: 'business',
        }),
        'replaceSubscription must return false when the tier is no longer plan.expectedTier',
      ).toBe(false)
      const plans = await Promise.all(
        (['business', 'starter'] as const).map((tier) =>
          admin.replaceSubscription!(downgrading.tenantId, canceled!.subscription, upgraded, {
            expectedTier: 'team',
            tier,
          }),
        ),
      )
      expect(
        plans.filter(Boolean),
        'of two concurrent plan changes from one reading, exactly one must win',
      ).toHaveLength(1)
      const moved = await store.findTenant(downgrading.tenantId)
      expect(moved?.tier, 'replaceSubscription with a plan must write plan.tier').toBe(
        plans[0] ? 'business' : 'starter',
      )
      expect(moved?.subscription.cancelAtPeriodEnd ?? false, 'findTenant must return cancelAtPeriodEnd cleared').toBe(
        false,
      )
      expect(
        moved?.subscription.scheduledChangeAt ?? null,
        'findTenant must return scheduledChangeAt cleared',
      ).toBeNull()
    })

    it('adds usage buckets with an additive upsert, and reads them by tenant, range and key, when it has addUsage', async () => {
      if (store.addUsage === undefined) return
      expect(typeof store.readUsage, 'a store with addUsage must have readUsage too').toBe('function')
      const hour = 3_600_000
      const start = Math.floor(Date.now() / hour) * hour
      const bucket = (keyId: string | null, hourStartMs: number, counts: Partial<UsageCounts> = {}): UsageBucket => ({
        tenantId: tenant.tenantId,
        keyId,
        hourStartMs,
        admitted: 0,
        rateLimited: 0,
        quotaExceeded: 0,
        forbidden: 0,
        paymentRequired: 0,
        ...counts,
      })
      await store.addUsage([
        bucket('AAAAAAAAAAAA', start, { admitted: 3, rateLimited: 1 }),
        bucket(null, start, { paymentRequired: 2 }),
        bucket('AAAAAAAAAAAA', start - hour, { quotaExceeded: 4 }),
      ])
      // Two processes' batches for the same bucket, at once: both counted.
      await Promise.all([
        store.addUsage([bucket('AAAAAAAAAAAA', start, { admitted: 5, forbidden: 1 })]),
        store.addUsage([bucket('AAAAAAAAAAAA', start, { admitted: 7 })]),
      ])
      const other = conformanceTenant()
      await harness.addTenant(other)
      await store.addUsage([{ ...bucket('BBBBBBBBBBBB', start, { admitted: 100 }), tenantId: other.tenantId }])
      const byKey = (rows: readonly UsageBucket[]) =>
        [...rows].sort((a, b) => a.hourStartMs - b.hourStartMs || String(a.keyId).localeCompare(String(b.keyId)))
      const read = await store.readUsage!({ tenantId: tenant.tenantId, fromMs: start - hour, toMs: start + hour })
      expect(byKey(read), 'readUsage must return each bucket with the sums of every addUsage').toEqual([
        bucket('AAAAAAAAAAAA', start - hour, { quotaExceeded: 4 }),
        bucket('AAAAAAAAAAAA', start, { admitted: 15, rateLimited: 1, forbidden: 1 }),
        bucket(null, start, { paymentRequired: 2 }),
      ])
      expect(
        await store.readUsage!({ tenantId: tenant.tenantId, fromMs: start, toMs: start + hour, keyId: 'AAAAAAAAAAAA' }),
        "readUsage({ keyId }) must return that key's buckets in [fromMs, toMs) only",
      ).toEqual([bucket('AAAAAAAAAAAA', start, { admitted: 15, rateLimited: 1, forbidden: 1 })])
      expect(
        await store.readUsage!({ tenantId: tenant.tenantId, fromMs: start + hour, toMs: start + 2 * hour }),
        'readUsage must leave out buckets before fromMs',
      ).toEqual([])
      await expect(
        store.addUsage([bucket('AAAAAAAAAAAA', start + 1)]),
        'addUsage accepted an hourStartMs that is not a whole hour: check buckets with usageBucketsProblem',
      ).rejects.toThrow()
      if (store.pruneUsage !== undefined) {
        expect(
          await store.pruneUsage(start),
          'pruneUsage must resolve with how many buckets it deleted',
        ).toBeGreaterThanOrEqual(1)
        expect(
          byKey(await store.readUsage!({ tenantId: tenant.tenantId, fromMs: start - hour, toMs: start + hour })),
          'pruneUsage(beforeMs) must delete the buckets before beforeMs and keep the others',
        ).toEqual([
          bucket('AAAAAAAAAAAA', start, { admitted: 15, rateLimited: 1, forbidden: 1 }),
          bucket(null, start, { paymentRequired: 2 }),
        ])
      }
    })

    it('serves usage history through the pipeline, when it has addUsage', async () => {
      if (store.addUsage === undefined) return
      const auth = createAuthenticator(store, { cache: { ttlMs: 0 }, usageHistory: { flushIntervalMs: 0 } })
      try {
        const created = await auth.keys.create(tenant.tenantId, { label: 'history' })
        for (let i = 0; i < 3; i++) await auth.authenticate(bearer(created.key))
        expect(await auth.flushUsageHistory(), 'one key in one hour is one bucket').toBe(1)
        const history = await auth.usageHistory(tenant.tenantId, { from: Date.now() - 3_600_000, to: Date.now() + 1 })
        expect(history.totals.admitted, 'the history must count each admitted request once').toBe(3)
        expect(history.keys.map((key) => key.keyId)).toEqual([created.keyId])
      } finally {
        auth.close()
      }
    })

    it('serves the whole pipeline: a key works until it is revoked', async () => {
      const auth = createAuthenticator(store, { cache: { ttlMs: 0 } })
      try {
        const created = await auth.keys.create(tenant.tenantId, { label: 'pipeline' })
        const admitted = await auth.authenticate(bearer(created.key))
        expect(
          admitted,
          'a freshly created key was refused: the store lost or altered the key or its tenant',
        ).toMatchObject({ ok: true })
        if (admitted.ok)
          expect(admitted.principal?.tenant.tenantId, 'a key authenticated as another tenant').toBe(tenant.tenantId)
        expect(
          await auth.keys.revoke(tenant.tenantId, created.keyId),
          'revoking a live key through the key manager failed',
        ).toBe(true)
        const refused = await auth.authenticate(bearer(created.key))
        expect(
          refused,
          'a revoked key was still admitted: findKey must return revokedAt after revokeKey',
        ).toMatchObject({ ok: false, status: 401 })
      } finally {
        auth.close()
      }
    })
  })
}
