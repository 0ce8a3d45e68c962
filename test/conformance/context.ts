import request from 'supertest'
import { afterEach, beforeEach, expect } from 'vitest'
import { DEFAULT_TIERS, MemoryKeyStore, type CreatedApiKey, type SaikuOptions, type TenantRecord } from '@saiku/core'
import { installFakeClock, type FakeClock } from '@saiku/core/testing'
import type { AdapterHarness, AppFixtures, AppSettings, ConformanceApp, Project } from './harness.js'

export const T0 = Date.parse('2030-01-01T00:00:00.000Z')
export const SPEC_402 =
  'This feature requires an active subscription or trial. Visit /billing to start your 14-day trial.'
export const UNAUTHORIZED_BODY = { error: 'unauthorized', message: 'API key missing or invalid.' }
export const BARE_CHALLENGE = 'Bearer realm="saiku"'
export const INVALID_TOKEN_CHALLENGE =
  'Bearer realm="saiku", error="invalid_token", error_description="The API key is malformed, unknown, expired or revoked"'
export const STARTER_POLICY = '"minute";q=60;w=60, "hour";q=1000;w=3600'

function tenant(slug: string, fields: Partial<TenantRecord> = {}): TenantRecord {
  return {
    tenantId: `00000000-0000-4000-8000-${slug.padEnd(12, '0').slice(0, 12)}`,
    tenantSlug: slug,
    tier: 'starter',
    connectionName: `${slug}-warehouse`,
    subscription: { status: 'active', trialEndsAt: null },
    ...fields,
  }
}

export const acme = tenant('acme')
export const globex = tenant('globex', { tier: 'team' })
export const unpaid = tenant('unpaid', { subscription: { status: 'none' } })
export const enterprise = tenant('enterprise', { tier: 'enterprise', limits: { perMinute: 5, perHour: 100 } })
/** A tier of 3 a minute and 5 an hour, so both windows run out within a few requests. */
export const tiny = tenant('tiny', { tier: 'tiny' })

const projects = new Map<string, Project>([
  ['p-acme', { id: 'p-acme', tenantId: acme.tenantId, name: 'Acme pipeline' }],
  ['p-globex', { id: 'p-globex', tenantId: globex.tenantId, name: 'Globex pipeline' }],
])

/** A reply in exactly the spec's error shape: `{"error", "message"}` as JSON, nothing else. */
export function expectJsonError(res: request.Response, status: number, error: string, message?: string): void {
  expect(res.status).toBe(status)
  expect(res.headers['content-type']).toBe('application/json; charset=utf-8')
  expect(Object.keys(res.body).sort()).toEqual(['error', 'message'])
  expect(res.body.error).toBe(error)
  expect(typeof res.body.message).toBe('string')
  if (message !== undefined) expect(res.body.message).toBe(message)
}

/** What every concern's cases share: a fresh store, fixtures and fake clock per case, and apps closed after it. */
export interface Conformance {
  readonly store: MemoryKeyStore
  readonly fixtures: AppFixtures
  readonly clock: FakeClock
  /** An app of the harness over the store, with the `tiny` tier added to `options.tiers`. */
  readonly start: (options?: SaikuOptions, settings?: AppSettings) => ConformanceApp
  readonly mint: (
    app: ConformanceApp,
    owner: TenantRecord,
    permissions?: string[],
    label?: string,
  ) => Promise<CreatedApiKey>
  readonly get: (app: ConformanceApp, path: string, key?: string) => request.Test
}

/** Registers the hooks of one concern's `describe` block; call it inside that block. */
export function useConformance(harness: AdapterHarness): Conformance {
  let store: MemoryKeyStore
  let fixtures: AppFixtures
  let clock: FakeClock
  let apps: ConformanceApp[] = []

  beforeEach(() => {
    clock = installFakeClock(T0)
    store = new MemoryKeyStore({
      tenants: [acme, globex, unpaid, enterprise],
      tiers: { ...DEFAULT_TIERS, tiny: { perMinute: 3, perHour: 5 } },
    })
    store.putTenant(tiny)
    fixtures = { projects, hits: { tenant: 0, preflight: 0 }, errors: [] }
    apps = []
  })
  afterEach(() => {
    for (const app of apps) app.authenticator.close()
    clock.restore()
  })

  return {
    get store() {
      return store
    },
    get fixtures() {
      return fixtures
    },
    get clock() {
      return clock
    },
    start(options = {}, settings = {}) {
      const app = harness.createApp(
        store,
        { ...options, tiers: { tiny: { perMinute: 3, perHour: 5 }, ...options.tiers } },
        fixtures,
        settings,
      )
      apps.push(app)
      return app
    },
    mint(app, owner, permissions = [], label = 'production-agent') {
      return app.authenticator.keys.create(owner.tenantId, { label, permissions })
    },
    get(app, path, key) {
      const req = request(app.handler).get(path)
      return key === undefined ? req : req.set('Authorization', `Bearer ${key}`)
    },
  }
}
