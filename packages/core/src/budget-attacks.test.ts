// Attacks on the failed-authentication budget through createAuthenticator: what a user's hook
// that throws, a store that answers late, or hostile input can do to the places an address holds.
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createAuthenticator, type Authenticator } from './authenticator.js'
import { FailureBudget, type FailureBudgetOptions } from './failure-budget.js'
import { mintApiKey } from './keys.js'
import type { SaikuOptions } from './options.js'
import { MemoryKeyStore } from './store.js'
import { conformanceTenant } from './testing.js'

const acme = conformanceTenant()
const unpaid = conformanceTenant({ subscription: { status: 'none', trialEndsAt: null } })

/** A failure budget on the clock `now`, as the authenticator builds one but for `options`. */
function budgetAt(now: { ms: number }, options: Partial<FailureBudgetOptions>): FailureBudget {
  return new FailureBudget({
    perMinute: 30,
    perHour: 300,
    maxClients: 100,
    trustVerifiedMs: 3_600_000,
    maxTrustedKeys: 100,
    maxLookupsInFlight: 8,
    lookupsOverBudgetPerMinute: 5,
    maxQueuedLookups: 0,
    queueWaitMs: 1_000,
    now: () => now.ms,
    ...options,
  })
}

describe('the failure budget under attack', () => {
  let store: MemoryKeyStore
  const opened: Authenticator[] = []

  beforeEach(() => {
    store = new MemoryKeyStore({ tenants: [acme, unpaid] })
  })
  afterEach(() => {
    for (const authenticator of opened.splice(0)) authenticator.close()
  })

  function start(options: SaikuOptions): Authenticator {
    const authenticator = createAuthenticator(store, { onError: () => {}, ...options })
    opened.push(authenticator)
    return authenticator
  }

  async function statusOf(authenticator: Authenticator, key: string, ip = '198.51.100.7'): Promise<number> {
    const decision = await authenticator.authenticate({
      headers: { authorization: `Bearer ${key}` },
      method: 'GET',
      url: '/me/tenant',
      ip,
    })
    return decision.ok ? 200 : decision.status
  }

  it('gives back the place of a lookup whose decision threw (a subscription.isExempt that throws): the address keeps verifying keys', async () => {
    const authenticator = start({
      keyStoreTimeoutMs: 200,
      failedAuth: { maxLookupsInFlight: 2 },
      subscription: {
        isExempt: () => {
          throw new Error('the billing service is down')
        },
      },
    })
    const unpaidKeys = await Promise.all(
      Array.from({ length: 6 }, (_, i) => authenticator.keys.create(unpaid.tenantId, { label: `agent-${i}` })),
    )
    // Each key is new to the cache: a store lookup through the budget, then a decision that throws (a JSON 500).
    for (const { key } of unpaidKeys) expect(await statusOf(authenticator, key)).toBe(500)
    const valid = await authenticator.keys.create(acme.tenantId, { label: 'production-agent' })
    expect(await statusOf(authenticator, valid.key)).toBe(200)
  })

  it('gives back the places of lookups whose store or verifier throws at once, and counts no failure for them', async () => {
    const broken = { value: true }
    const findKey = store.findKey.bind(store)
    store.findKey = (keyId) => {
      if (broken.value) throw new Error('connection refused')
      return findKey(keyId)
    }
    const viaStore = start({ failedAuth: { maxLookupsInFlight: 2, perMinute: 3 } })
    const viaVerifier = start({
      failedAuth: { maxLookupsInFlight: 2, perMinute: 3 },
      verifier: {
        verify: () => {
          throw new Error('verifier down')
        },
      },
    })
    const keys = await Promise.all(
      Array.from({ length: 20 }, (_, i) => viaStore.keys.create(acme.tenantId, { label: `agent-${i}` })),
    )
    for (const app of [viaStore, viaVerifier]) {
      const statuses = await Promise.all(keys.map(({ key }) => statusOf(app, key)))
      expect(statuses).toEqual(Array(20).fill(503))
    }
    broken.value = false
    // Every place is back and nothing was charged: each valid key verifies from that address.
    for (const { key } of keys.slice(0, 10)) expect(await statusOf(viaStore, key)).toBe(200)
  })

  it('gives back the place of a lookup answered at once by a verifier of the user’s, when the decision throws', async () => {
    const throwing = { value: true }
    const authenticator = start({
      keyStoreTimeoutMs: 200,
      failedAuth: { maxLookupsInFlight: 2 },
      subscription: {
        isExempt: () => {
          if (throwing.value) throw new Error('the billing service is down')
          return false
        },
      },
      verifier: {
        verify: (token) => ({
          ok: true,
          credential: {
            type: 'api_key',
            keyId: token.slice(8, 20),
            tenantId: unpaid.tenantId,
            label: 'agent',
            environment: 'live',
            permissions: [],
            expiresAt: null,
          },
        }),
      },
    })
    for (let i = 0; i < 6; i++) expect(await statusOf(authenticator, mintApiKey().key)).toBe(500)
    throwing.value = false
    expect(await statusOf(authenticator, mintApiKey().key)).toBe(402)
  })
})

describe('the failure budget when the clock steps back', () => {
  it('keeps an address over budget when the clock steps back (NTP): its windows keep their counts, and no wait is over a window long', () => {
    const now = { ms: 1_000_000 }
    const b = budgetAt(now, { perMinute: 3, perHour: 10, lookupsOverBudgetPerMinute: 1 })
    for (let i = 0; i < 3; i++) expect(b.fail('a', now.ms, true)).toBe(0)
    expect(b.fail('a')).toBeGreaterThan(0)
    for (const stepMs of [1, 1_000, 59_000, 3_600_000]) {
      now.ms -= stepMs
      const wait = b.fail('a')
      expect(wait).toBeGreaterThan(0)
      expect(wait).toBeLessThanOrEqual(60_000)
      expect(b.waitMs('a')).toBeGreaterThan(0)
      expect(b.lookupWaitMs('a')).toBeGreaterThan(0)
      expect(b.lookupWaitMs('a')).toBeLessThanOrEqual(60_000)
    }
    // A minute after the last step, the minute's counts are gone as usual.
    now.ms += 60_000
    expect(b.fail('a')).toBe(0)
  })

  it('keeps the hour’s counts when the clock steps back', () => {
    const now = { ms: 1_000_000 }
    const b = budgetAt(now, { perMinute: 3, perHour: 10, lookupsOverBudgetPerMinute: 1 })
    for (let minute = 0; minute < 4; minute++) {
      for (let i = 0; i < 3; i++) b.fail('a', now.ms, true)
      now.ms += 60_000
    }
    // Ten failures this hour: the hour is spent whatever the minute says.
    expect(b.fail('a')).toBeGreaterThan(0)
    // Back to before the hour began.
    now.ms -= 300_000
    expect(b.fail('a')).toBeGreaterThan(0)
    expect(b.lookupWaitMs('a')).toBeGreaterThan(0)
    expect(b.lookupWaitMs('a')).toBeLessThanOrEqual(3_600_000)
  })
})

describe('the failure budget when its addresses are at their bound', () => {
  it('spends no allowance point on a lookup refused because too many addresses have lookups in flight', () => {
    const now = { ms: 1_000_000 }
    const b = budgetAt(now, { perMinute: 2, perHour: 20, maxClients: 2, lookupsOverBudgetPerMinute: 2 })
    const held = ['key-a', 'key-c'].map((keyId, i) => b.gate(`198.51.100.${i + 1}`, keyId, true))
    // Over budget: the store is closed to this address but for its allowance.
    for (let i = 0; i < 2; i++) b.fail('203.0.113.9', now.ms, true)
    // Two other addresses hold every place in the map of lookups: busy, however often it is tried.
    for (let i = 0; i < 5; i++) expect(b.gate('203.0.113.9', `key-${i}`, true)).toMatchObject({ kind: 'busy' })
    for (const gate of held) {
      if (gate instanceof Promise || gate.kind !== 'slot') throw new Error('expected a slot')
      gate.slot.release()
    }
    // Those places free again, the allowance is whole: two lookups, then 429.
    expect(b.gate('203.0.113.9', 'key-x', true)).toMatchObject({ kind: 'slot' })
    expect(b.gate('203.0.113.9', 'key-y', true)).toMatchObject({ kind: 'slot' })
    expect(b.gate('203.0.113.9', 'key-z', true)).toMatchObject({ kind: 'over' })
  })
})

describe('the trust list when one tenant fills it', () => {
  it('keeps a neighbour’s trusted keys while one tenant has many more of its keys admitted, within the bound', () => {
    const now = { ms: 1_000_000 }
    const b = budgetAt(now, { maxTrustedKeys: 10 })
    for (let i = 0; i < 4; i++) b.admitted(`victim-${i}`, 'victim-tenant', now.ms)
    for (let i = 0; i < 1_000; i++) {
      now.ms += 1
      b.admitted(`flood-${i}`, 'flooding-tenant', now.ms)
    }
    expect(b.trustedKeys).toBe(10)
    for (let i = 0; i < 4; i++) expect(b.isTrusted(`victim-${i}`)).toBe(true)
    // The flooding tenant keeps its newest keys in what is left.
    expect(b.isTrusted('flood-999')).toBe(true)
    expect(b.isTrusted('flood-993')).toBe(false)
  })

  it('gives a tenant holding more than its share back down to it, never below', () => {
    const now = { ms: 1_000_000 }
    const b = budgetAt(now, { maxTrustedKeys: 10 })
    for (let i = 0; i < 8; i++) b.admitted(`big-${i}`, 'big-tenant', now.ms)
    for (let i = 0; i < 100; i++) b.admitted(`small-${i}`, 'small-tenant', ++now.ms)
    const held = (prefix: string, count: number) =>
      Array.from({ length: count }, (_, i) => b.isTrusted(`${prefix}-${i}`)).filter(Boolean).length
    expect(held('big', 8)).toBe(5)
    expect(b.trustedKeys).toBe(10)
  })
})
