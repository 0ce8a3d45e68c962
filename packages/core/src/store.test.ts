import { describe, expect, it } from 'vitest'
import { mintApiKey } from './keys.js'
import { MemoryKeyStore, validateTenantRecord } from './store.js'
import { describeKeyStoreConformance } from './testing.js'

describeKeyStoreConformance('MemoryKeyStore', async () => {
  const store = new MemoryKeyStore()
  return { store, addTenant: async (tenant) => store.putTenant(tenant) }
})

describe('MemoryKeyStore', () => {
  const tenant = {
    tenantId: 't',
    tenantSlug: 'acme',
    tier: 'team',
    connectionName: 'w',
    subscription: { status: 'active' as const },
  }

  it('hands out copies, so callers cannot change what it holds', async () => {
    const store = new MemoryKeyStore({ tenants: [tenant] })
    const found = await store.findTenant('t')
    ;(found as { tier: string }).tier = 'business'
    expect((await store.findTenant('t'))?.tier).toBe('team')
  })

  it('refuses a tenant the tier table cannot serve when it is written', () => {
    const store = new MemoryKeyStore()
    expect(() => store.putTenant({ ...tenant, tier: 'enterprise' })).toThrow(
      'tenants["acme"].limits: expected { perMinute, perHour }',
    )
    expect(() => store.putTenant({ ...tenant, subscription: { status: 'paid' as never } })).toThrow(
      'tenant.subscription.status',
    )
  })

  it('refuses a scheduled change the tier table cannot serve, or one without the date it takes effect', () => {
    const store = new MemoryKeyStore()
    const at = new Date('2030-03-31T00:00:00.000Z')
    const scheduled = (subscription: object) => () =>
      store.putTenant({ ...tenant, subscription: { status: 'active', ...subscription } as never })
    for (const scheduledTier of ['gold', 'enterprise', '__proto__', 'constructor', 42])
      expect(scheduled({ scheduledTier, scheduledChangeAt: at }), String(scheduledTier)).toThrow(
        'tenant.subscription.scheduledTier: expected null or one of starter, team, business',
      )
    expect(scheduled({ scheduledTier: 'starter' })).toThrow(
      'tenant.subscription.scheduledChangeAt: expected the Date the scheduled change takes effect',
    )
    expect(scheduled({ cancelAtPeriodEnd: true })).toThrow('tenant.subscription.scheduledChangeAt')
    expect(scheduled({ scheduledChangeAt: at })).toThrow(
      'tenant.subscription.scheduledChangeAt: expected null when no change is scheduled',
    )
    expect(scheduled({ cancelAtPeriodEnd: 'yes', scheduledChangeAt: at })).toThrow(
      'tenant.subscription.cancelAtPeriodEnd: expected a boolean',
    )
    expect(scheduled({ cancelAtPeriodEnd: true, scheduledTier: 'starter', scheduledChangeAt: at })).toThrow(
      'tenant.subscription.scheduledTier: expected null when the subscription is canceled at period end',
    )
    expect(scheduled({ scheduledTier: 'starter', scheduledChangeAt: new Date(Number.NaN) })).toThrow(
      'tenant.subscription.scheduledChangeAt: expected a valid Date or null',
    )
    expect(scheduled({ scheduledTier: 'starter', scheduledChangeAt: at })).not.toThrow()
  })

  it('refuses a bad key record with an error of the family naming the field, never a plain Error', async () => {
    const store = new MemoryKeyStore({ tenants: [tenant] })
    const record = {
      keyId: mintApiKey('live').keyId,
      tenantId: 't',
      label: 'x',
      environment: 'live' as const,
      secretDigest: '0'.repeat(64),
      permissions: [],
      createdAt: new Date(),
      expiresAt: null,
      revokedAt: null,
      lastUsedAt: null,
    }
    await expect(store.createKey({ ...record, keyId: 'nope' })).rejects.toMatchObject({
      name: 'SaikuInputError',
      code: 'ERR_SAIKU_INVALID_INPUT',
      field: 'keyId',
    })
    await expect(store.createKey({ ...record, environment: 'staging' as never })).rejects.toMatchObject({
      code: 'ERR_SAIKU_INVALID_INPUT',
      field: 'environment',
    })
    await expect(store.createKey({ ...record, secretDigest: 'x' })).rejects.toMatchObject({
      code: 'ERR_SAIKU_INVALID_INPUT',
      field: 'secretDigest',
    })
    await expect(store.createKey({ ...record, tenantId: 'other' })).rejects.toMatchObject({
      name: 'SaikuNotFoundError',
      code: 'ERR_SAIKU_NOT_FOUND',
      resource: 'tenant',
    })
    await store.createKey(record)
    await expect(store.createKey(record)).rejects.toMatchObject({
      code: 'ERR_SAIKU_INVALID_INPUT',
      field: 'keyId',
      message: `createKey: key ID ${record.keyId} exists already`,
    })
  })
})

describe('validateTenantRecord', () => {
  it('names the field at fault', () => {
    const base = {
      tenantId: 't',
      tenantSlug: 's',
      tier: 'team',
      connectionName: 'c',
      subscription: { status: 'active' as const },
    }
    expect(() => validateTenantRecord({ ...base, tenantSlug: '' })).toThrow(
      'tenant.tenantSlug: expected a non-empty string, got ""',
    )
    expect(() =>
      validateTenantRecord({ ...base, subscription: { status: 'trialing', trialEndsAt: new Date(NaN) } }),
    ).toThrow('tenant.subscription.trialEndsAt')
    expect(validateTenantRecord(base)).toBe(base)
  })
})
