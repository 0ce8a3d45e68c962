import { SqliteKeyStore } from '@saiku/sqlite'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { cli, cliJson, processTimeout, tempDatabase, type TempDir } from './helpers.js'

// `saiku billing …` on the store the servers use: the Billing API's rules, from the command line.

vi.setConfig({ testTimeout: processTimeout(4), hookTimeout: processTimeout(2) })

let db: TempDir
let env: Record<string, string>

beforeAll(() => {
  db = tempDatabase()
  env = { DATABASE_URL: db.databaseUrl, REDIS_URL: '', SAIKU_DATA_DIR: db.path }
})
afterAll(() => db?.remove())

interface View {
  tier: string
  billingAnchor: string | null
  currentPeriodStart: string
  currentPeriodEnd: string
  scheduledTier: string | null
  scheduledChangeAt: string | null
  cancelAtPeriodEnd: boolean
  changed?: boolean
}

describe('saiku billing', () => {
  it('shows the plan and period, schedules a downgrade, upgrades at once, cancels and resumes, each in Activity', async () => {
    await cliJson(['tenants', 'create', '--slug', 'ledger', '--tier', 'team', '--subscription', 'active'], env)
    const shown = await cliJson<View>(['billing', 'show', '--tenant', 'ledger'], env)
    // A plan started today anchors the periods on today.
    expect(shown.billingAnchor?.slice(0, 10)).toBe(new Date().toISOString().slice(0, 10))
    expect(Date.parse(shown.currentPeriodStart)).toBeLessThanOrEqual(Date.now())
    expect(Date.parse(shown.currentPeriodEnd)).toBeGreaterThan(Date.now())
    const human = await cli(['billing', 'show', '--tenant', 'ledger'], env)
    expect(human.stdout).toContain('ledger: team, subscription active')
    expect(human.stdout).toContain(`period: ${shown.currentPeriodStart.slice(0, 10)} to`)

    const downgrade = await cliJson<View>(['billing', 'plan', '--tenant', 'ledger', '--tier', 'starter'], env)
    expect(downgrade).toMatchObject({
      tier: 'team',
      scheduledTier: 'starter',
      scheduledChangeAt: shown.currentPeriodEnd,
      changed: true,
    })
    const upgrade = await cliJson<View>(['billing', 'plan', '--tenant', 'ledger', '--tier', 'business'], env)
    expect(upgrade).toMatchObject({ tier: 'business', scheduledTier: null, changed: true })
    const same = await cliJson<View>(['billing', 'plan', '--tenant', 'ledger', '--tier', 'business'], env)
    expect(same.changed).toBe(false)
    expect(await cliJson<View>(['billing', 'cancel', '--tenant', 'ledger'], env)).toMatchObject({
      cancelAtPeriodEnd: true,
      scheduledChangeAt: shown.currentPeriodEnd,
    })
    const blocked = await cli(['billing', 'plan', '--tenant', 'ledger', '--tier', 'team'], env)
    expect(blocked.code).toBe(1)
    expect(blocked.stderr).toContain('undo the cancellation')
    expect(await cliJson<View>(['billing', 'resume', '--tenant', 'ledger'], env)).toMatchObject({
      cancelAtPeriodEnd: false,
      scheduledChangeAt: null,
    })
    const activity = await cliJson<{ action: string; target: string | null; actorType: string }[]>(
      ['activity', '--tenant', 'ledger'],
      env,
    )
    expect(activity.map((event) => event.action).reverse()).toEqual([
      'plan.change_scheduled',
      'plan.changed',
      'subscription.cancel_scheduled',
      'subscription.cancel_undone',
    ])
  })

  it('applies a downgrade and a cancellation whose period ended, once each, in Activity as the period end', async () => {
    await cliJson(['tenants', 'create', '--slug', 'lapsed', '--tier', 'team', '--subscription', 'active'], env)
    await cliJson(['tenants', 'create', '--slug', 'leaving', '--tier', 'business', '--subscription', 'active'], env)
    // Both scheduled for a period end that has passed, as a server that was down then would find them.
    const store = new SqliteKeyStore(db.databaseUrl.slice('sqlite:'.length), { watchIntervalMs: 0 })
    const ended = new Date(Date.now() - 60_000)
    for (const [slug, due] of [
      ['lapsed', { scheduledTier: 'starter', scheduledChangeAt: ended }],
      ['leaving', { cancelAtPeriodEnd: true, scheduledChangeAt: ended }],
    ] as const) {
      const tenant = (await store.findTenantBySlug(slug))!
      expect(
        await store.replaceSubscription(tenant.tenantId, tenant.subscription, { ...tenant.subscription, ...due }),
      ).toBe(true)
    }
    store.close()

    expect(await cliJson<View>(['billing', 'show', '--tenant', 'lapsed'], env)).toMatchObject({
      tier: 'starter',
      scheduledTier: null,
    })
    expect(await cliJson<View>(['billing', 'show', '--tenant', 'lapsed'], env)).toMatchObject({ tier: 'starter' })
    // A change command finds the cancellation due first: applied, then the command sees a canceled subscription.
    const late = await cli(['billing', 'resume', '--tenant', 'leaving'], env)
    expect([late.code, late.stderr]).toEqual([
      1,
      'saiku: There is no cancellation to undo: this subscription is canceled.\n',
    ])
    for (const [slug, action, target] of [
      ['lapsed', 'plan.changed', 'team → starter'],
      ['leaving', 'subscription.canceled', 'business'],
    ] as const) {
      const activity = await cliJson<
        { action: string; target: string | null; actorType: string; actor: string; ip: string | null }[]
      >(['activity', '--tenant', slug], env)
      expect(activity).toEqual([
        { at: expect.any(String), action, actorType: 'system', actor: 'billing period end', target, ip: null },
      ])
      const text = await cli(['activity', '--tenant', slug], env)
      expect(text.stdout).toMatch(
        new RegExp(`\\t${action.replace('.', '\\.')}\\tBilling \\(period end\\)\\t${target}\\t-$`, 'm'),
      )
    }
  })

  it('refuses an unknown or enterprise tier and a missing tenant before anything is written', async () => {
    for (const tier of ['gold', '__proto__', 'constructor', 'enterprise']) {
      const result = await cli(['billing', 'plan', '--tenant', 'ledger', '--tier', tier], env)
      expect(result.code, tier).toBe(2)
      expect(result.stderr, tier).toMatch(/--tier: (tier must be one of starter, team, business\.|The enterprise plan)/)
    }
    expect((await cli(['billing', 'plan', '--tenant', 'ledger'], env)).code).toBe(2)
    expect((await cli(['billing', 'refund', '--tenant', 'ledger'], env)).code).toBe(2)
    expect((await cli(['billing', 'show'], env)).code).toBe(2)
    const missing = await cli(['billing', 'show', '--tenant', 'nobody'], env)
    expect([missing.code, missing.stderr]).toEqual([1, 'saiku: No tenant with slug "nobody".\n'])
    await cliJson(['tenants', 'create', '--slug', 'unpaid', '--tier', 'team', '--subscription', 'none'], env)
    const unpaid = await cli(['billing', 'plan', '--tenant', 'unpaid', '--tier', 'business'], env)
    expect([unpaid.code, unpaid.stderr]).toEqual([
      1,
      'saiku: Changing plan requires an active subscription or trial; this subscription is none.\n',
    ])
  })

  it('lists the billing commands in the help', async () => {
    const help = await cli(['help'], env)
    for (const line of [
      'billing show --tenant SLUG',
      'billing plan --tenant SLUG --tier',
      'billing cancel',
      'billing resume',
    ])
      expect(help.stdout).toContain(line)
  })
})
