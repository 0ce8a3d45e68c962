import { createAuthenticator } from './authenticator.js'
import { createTokenIssuer } from './jwt.js'
import { MemoryKeyStore } from './store.js'
import { describe, expect, it } from 'vitest'
import { SaikuConfigError } from './errors.js'
import { resolveOptions } from './options.js'
import { DEFAULT_TIERS, limitsForTenant, resolveTierTable } from './tiers.js'

function configError(run: () => unknown): SaikuConfigError {
  try {
    run()
  } catch (error) {
    expect(error).toBeInstanceOf(SaikuConfigError)
    return error as SaikuConfigError
  }
  throw new Error('expected a SaikuConfigError')
}

describe('resolveOptions', () => {
  it('fills every default in one frozen object', () => {
    const options = resolveOptions()
    expect(options).toMatchObject({
      realm: 'saiku',
      rateLimitHeaders: 'draft-11',
      cache: { ttlMs: 10_000, negativeTtlMs: 10_000, maxEntries: 10_000 },
      keyStoreTimeoutMs: 1_000,
      failurePolicy: { keyStore: 'closed', limiter: 'closed' },
      subscription: { required: true },
      environments: ['live', 'test'],
      lastUsedResolutionMs: 60_000,
    })
    expect(options.tiers).toBe(DEFAULT_TIERS)
    expect(Object.isFrozen(options)).toBe(true)
    expect(Object.isFrozen(options.cache)).toBe(true)
  })

  it('never writes into the caller’s object', () => {
    const input = Object.freeze({
      cache: Object.freeze({ ttlMs: 5 }),
      tiers: Object.freeze({ team: Object.freeze({ perMinute: 1, perHour: 2 }) }),
    })
    expect(() => resolveOptions(input)).not.toThrow()
  })

  it.each([
    [{ tiers: { team: { perMinute: -1, perHour: 10 } } }, 'tiers.team.perMinute: expected a positive integer, got -1'],
    [
      { tiers: { team: { perMinute: 1.5, perHour: 10 } } },
      'tiers.team.perMinute: expected a positive integer, got 1.5',
    ],
    [{ tiers: { team: { perMinute: 0, perHour: 10 } } }, 'tiers.team.perMinute: expected a positive integer, got 0'],
    [
      { tiers: { team: { perMinute: 100, perHour: 50 } } },
      'tiers.team.perHour: expected at least perMinute (100), got 50',
    ],
    [
      { tiers: { gold: 'unlimited' } },
      'tiers.gold: expected an object { perMinute, perHour, perDay?, perMonth? }, got "unlimited"',
    ],
    [{ rateLimitHeaders: 'draft-6' }, 'rateLimitHeaders: expected one of "draft-11", "legacy", "none", got "draft-6"'],
    [{ cache: { ttlMs: -1 } }, 'cache.ttlMs: expected an integer number of milliseconds from 0 to 2147483647, got -1'],
    [
      { cache: { ttl: 5 } },
      'cache.ttl: expected a known option (ttlMs, negativeTtlMs, maxEntries, maxStaleMs), got "ttl"',
    ],
    [{ failurePolicy: { limiter: 'ignore' } }, 'failurePolicy.limiter: expected one of "closed", "open", got "ignore"'],
    [{ realm: 'a"b' }, 'realm: expected 1 to 64 printable ASCII characters without quotes or backslashes, got "a\\"b"'],
    [{ environments: ['prod'] }, 'environments: expected a non-empty array of "live" and/or "test", got an array'],
    [
      { pepper: 'short' },
      'pepper: expected a string or Buffer of at least 16 characters, got a string of 5 characters (not shown)',
    ],
    [
      { keyStoreTimeoutMs: 0 },
      'keyStoreTimeoutMs: expected an integer number of milliseconds from 1 to 2147483647, got 0',
    ],
    [
      { subscription: { exemptPaths: ['billing'] } },
      'subscription.exemptPaths[0]: expected a path starting with "/", got "billing"',
    ],
    [
      { failedAuth: { maxLookupsInFlight: 0 } },
      'failedAuth.maxLookupsInFlight: expected an integer from 1 to 1000, got 0',
    ],
    [
      { failedAuth: { lookupsOverBudgetPerMinute: -1 } },
      'failedAuth.lookupsOverBudgetPerMinute: expected an integer from 0 to 1000, got -1',
    ],
    [
      { failedAuth: { lookupsOverBudgetPerMinute: 2.5 } },
      'failedAuth.lookupsOverBudgetPerMinute: expected an integer from 0 to 1000, got 2.5',
    ],
    [{ onDecision: 'log' }, 'onDecision: expected a function, got "log"'],
    [{ cost: 2 }, 'cost: expected a function, got 2'],
    [{ windows: 'sliding' }, 'windows: expected one of "fixed", "rolling", got "sliding"'],
    [
      { windows: 'rolling', limiter: { factory: () => ({}) } },
      'windows: expected "fixed" with limiter.factory (rate-limiter-flexible counts fixed windows only; rolling windows need the memory backend or @saiku/redis), got "rolling"',
    ],
    [
      { windows: 'rolling', limiter: { backend: { consume: () => Promise.reject(new Error('unused')) } } },
      'windows: expected "fixed", as limiter.backend counts (build the backend with windows: "rolling"), got "rolling"',
    ],
    [
      {
        windows: 'fixed',
        limiter: { backend: { windows: 'rolling', consume: () => Promise.reject(new Error('unused')) } },
      },
      'windows: expected "rolling", as limiter.backend counts (build the backend with windows: "fixed"), got "fixed"',
    ],
    [{ cost: { '/me/usage': 0 } }, 'cost: expected a function, got an object'],
    [
      { limiter: { backend: {} } },
      'limiter.backend: expected an object with a consume(tenantKey, limits) method, got an object',
    ],
    [{ windowMs: 60_000 }, 'windowMs: expected a known option'],
  ])('rejects %j with a precise message', (input, message) => {
    expect(configError(() => resolveOptions(input as never)).message).toContain(message)
  })

  it('exempts whole path segments only', () => {
    const { subscription } = resolveOptions({ subscription: { exemptPaths: ['/me/billing/'] } })
    const request = { headers: {}, method: 'GET', url: '/' }
    expect(subscription.isExempt('/me/billing', request)).toBe(true)
    expect(subscription.isExempt('/me/billing/trial', request)).toBe(true)
    expect(subscription.isExempt('/me/billingx', request)).toBe(false)
    expect(subscription.isExempt('/me/tenant', request)).toBe(false)
  })
})

describe('tiers', () => {
  it('holds the spec’s table', () => {
    expect(DEFAULT_TIERS).toEqual({
      starter: { perMinute: 60, perHour: 1_000 },
      team: { perMinute: 300, perHour: 10_000 },
      business: { perMinute: 1_000, perHour: 50_000 },
      enterprise: 'custom',
    })
  })

  it('merges overrides over the defaults', () => {
    const table = resolveTierTable({
      team: { perMinute: 500, perHour: 20_000 },
      hobby: { perMinute: 10, perHour: 100 },
    })
    expect(table.team).toEqual({ perMinute: 500, perHour: 20_000 })
    expect(table.starter).toEqual({ perMinute: 60, perHour: 1_000 })
    expect(table.hobby).toEqual({ perMinute: 10, perHour: 100 })
  })

  const tenant = { tenantSlug: 'acme', tier: 'enterprise' }
  it('takes an enterprise tenant’s own limits, and names the tenant when they are missing', () => {
    expect(limitsForTenant(DEFAULT_TIERS, { ...tenant, limits: { perMinute: 5_000, perHour: 100_000 } })).toEqual({
      perMinute: 5_000,
      perHour: 100_000,
    })
    expect(configError(() => limitsForTenant(DEFAULT_TIERS, tenant)).message).toBe(
      'tenants["acme"].limits: expected { perMinute, perHour } for the custom tier "enterprise", got undefined',
    )
    expect(
      configError(() => limitsForTenant(DEFAULT_TIERS, { ...tenant, limits: { perMinute: 10, perHour: 5 } })).path,
    ).toBe('tenants["acme"].limits.perHour')
  })

  it('refuses an unknown tier instead of guessing one', () => {
    expect(configError(() => limitsForTenant(DEFAULT_TIERS, { tenantSlug: 'acme', tier: 'gold' })).message).toBe(
      'tenants["acme"].tier: expected one of starter, team, business, enterprise, got "gold"',
    )
    expect(() => limitsForTenant(DEFAULT_TIERS, { tenantSlug: 'x', tier: 'toString' })).toThrow(SaikuConfigError)
  })

  it('never echoes a secret-bearing option in a configuration error', () => {
    const cases: [() => unknown, string, string][] = [
      [
        () => resolveOptions({ pepper: 'hunter2-short' }),
        'hunter2',
        'pepper: expected a string or Buffer of at least 16 characters, got a string of 13 characters (not shown)',
      ],
      [
        () =>
          createAuthenticator(new MemoryKeyStore(), {
            jwt: {
              key: 'an-hmac-secret-passed-as-a-string-value' as never,
              issuer: 'i',
              audience: 'a',
              algorithms: ['HS256'],
            },
          }),
        'an-hmac-secret',
        'jwt.key: expected a public JWK or a shared secret (bytes), got a string of 39 characters (not shown)',
      ],
      [
        () =>
          createAuthenticator(new MemoryKeyStore(), {
            jwt: {
              jwksUrl: 'https://user:s3cret-pass@id.example.test/jwks',
              issuer: 'i',
              audience: 'a',
              algorithms: ['ES256'],
            },
          }),
        's3cret-pass',
        'jwt.jwksUrl: expected a URL without a user name or password (a JWKS is public), got "https://redacted@id.example.test/jwks"',
      ],
      [
        () =>
          createTokenIssuer({
            privateKey: '-----BEGIN PRIVATE KEY-----MIGHAgEAMBMGByqGSM49' as never,
            issuer: 'i',
            audience: 'a',
          }),
        'MIGHAgEAMBMG',
        'tokens.privateKey: expected a private JWK with a kid, got a string of',
      ],
    ]
    for (const [run, secret, message] of cases) {
      const error = configError(run)
      expect(error.message).toContain(message)
      expect(error.message).not.toContain(secret)
    }
  })
})

describe('reportOnly', () => {
  it('is off by default, and chooses tenants by tier or ID', () => {
    const off = resolveOptions().reportOnly
    expect([off.limits('starter', 't-1'), off.authentication, off.rateLimitHeaders]).toEqual([false, false, true])
    expect(resolveOptions({ reportOnly: { limits: true } }).reportOnly.limits('team', 't-1')).toBe(true)
    const chosen = resolveOptions({
      tiers: { tiny: { perMinute: 1, perHour: 2 } },
      reportOnly: { limits: { tiers: ['tiny'], tenants: ['t-9'] } },
    }).reportOnly
    expect([chosen.limits('tiny', 't-1'), chosen.limits('starter', 't-9'), chosen.limits('starter', 't-1')]).toEqual([
      true,
      true,
      false,
    ])
  })

  it.each([
    [{ limits: 'yes' }, 'reportOnly.limits: expected a boolean or { tiers, tenants }, got "yes"'],
    [{ limits: {} }, 'reportOnly.limits: expected true, false, or at least one tier or tenant'],
    [
      { limits: { tiers: ['gold'] } },
      'reportOnly.limits.tiers[0]: expected a tier of the tier table (starter, team, business, enterprise), got "gold"',
    ],
    [{ limits: { tenants: [''] } }, 'reportOnly.limits.tenants[0]: expected a non-empty string'],
    [{ limits: { tenants: 't-1' } }, 'reportOnly.limits.tenants: expected an array of strings'],
    [{ limits: { tier: ['team'] } }, 'reportOnly.limits.tier: expected a known option (tiers, tenants)'],
    [{ authentication: 1 }, 'reportOnly.authentication: expected a boolean, got 1'],
    [{ rateLimitHeaders: 'off' }, 'reportOnly.rateLimitHeaders: expected a boolean'],
    [{ enforce: false }, 'reportOnly.enforce: expected a known option (limits, authentication, rateLimitHeaders)'],
  ])('refuses %j at construction', (reportOnly, message) => {
    expect(configError(() => resolveOptions({ reportOnly } as never)).message).toContain(message)
  })
})
