// Attacks on the failed-authentication budget through createAuthenticator: what a user's hook
// that throws, a store that answers late, or hostile input can do to the places an address holds.
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createAuthenticator, type Authenticator } from './authenticator.js'
import { mintApiKey } from './keys.js'
import type { SaikuOptions } from './options.js'
import { MemoryKeyStore, type TenantRecord } from './store.js'

function tenant(slug: string, fields: Partial<TenantRecord> = {}): TenantRecord {
  return {
    tenantId: `00000000-0000-4000-8000-${slug.padEnd(12, '0').slice(0, 12)}`,
    tenantSlug: slug,
    tier: 'team',
    connectionName: `${slug}-warehouse`,
    subscription: { status: 'active', trialEndsAt: null },
    ...fields,
  }
}

const acme = tenant('acme')
const unpaid = tenant('unpaid', { subscription: { status: 'none' } })

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
