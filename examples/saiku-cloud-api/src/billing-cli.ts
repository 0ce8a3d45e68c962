import { parseArgs } from 'node:util'
import { SaikuHttpError } from '@saiku/core'
import { billingView, cancelAtPeriodEnd, changePlan, requestedTier, settledTenant, undoCancel } from './billing.js'
import type { BillingResult, BillingView, SettlementRecorder } from './billing.js'
import { readConfig } from './config.js'
import { openStore } from './store.js'

// `saiku billing …`: the Billing API's reads and changes for an operator, on the store the servers use.

export const BILLING_USAGE = `  billing show --tenant SLUG       plan, billing anchor and period, what is scheduled for its end
  billing plan --tenant SLUG --tier starter|team|business
                                   an upgrade at once, a downgrade at the end of the billing period
  billing cancel --tenant SLUG     cancel at the end of the billing period
  billing resume --tenant SLUG     undo the cancellation before the period ends`

/** A mistake in a billing command line: usage, exit code 2. */
export class BillingUsageError extends Error {}

export const isBillingCommand = (argv: readonly string[]): boolean =>
  argv.find((arg) => !arg.startsWith('-')) === 'billing'

interface CommandOutput {
  json: boolean
  print(human: string, data: unknown): void
}

function describe(slug: string, view: BillingView): string {
  const day = (iso: string) => iso.slice(0, 10)
  const lines = [
    `${slug}: ${view.tier}, subscription ${view.status}${view.trialEndsAt === null ? '' : ` (trial ends ${view.trialEndsAt})`}`,
    `  billing anchor: ${view.billingAnchor ?? 'none (calendar months in UTC)'}`,
    `  period: ${day(view.currentPeriodStart)} to ${day(view.currentPeriodEnd)}`,
  ]
  if (view.scheduledTier !== null && view.scheduledChangeAt !== null)
    lines.push(`  scheduled: ${view.scheduledTier} from ${view.scheduledChangeAt}`)
  if (view.cancelAtPeriodEnd && view.scheduledChangeAt !== null)
    lines.push(`  canceled at period end: ends ${view.scheduledChangeAt}`)
  return lines.join('\n')
}

export async function runBillingCommand(argv: string[], out: CommandOutput): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: { json: { type: 'boolean', default: false }, tenant: { type: 'string' }, tier: { type: 'string' } },
  })
  out.json = values.json
  const [, action, ...rest] = positionals
  const actions = ['show', 'plan', 'cancel', 'resume']
  if (action === undefined || !actions.includes(action))
    throw new BillingUsageError(`unknown command "billing${action === undefined ? '' : ` ${action}`}"`)
  if (rest.length > 0) throw new BillingUsageError(`unexpected argument "${rest[0]}"`)
  const slug = values.tenant
  if (slug === undefined || slug === '') throw new BillingUsageError('--tenant is required')
  if (action === 'plan' && values.tier === undefined) throw new BillingUsageError('--tier is required')
  if (action !== 'plan' && values.tier !== undefined)
    throw new BillingUsageError(`--tier: not an option of billing ${action}`)
  // Checked before the store is opened: an unknown or enterprise tier is a usage error (exit 2).
  let tier = ''
  if (action === 'plan') {
    try {
      tier = requestedTier(values.tier)
    } catch (error) {
      throw new BillingUsageError(`--tier: ${(error as Error).message}`)
    }
  }

  const opened = await openStore(readConfig().databaseUrl, { watchChanges: false })
  try {
    const { store } = opened
    const tenant = await store.findTenantBySlug(slug)
    if (tenant === null) throw new SaikuHttpError('not_found', `No tenant with slug "${slug}".`)
    const nowMs = Date.now()
    // A change whose period has ended, applied by this command, goes in Activity as the servers' do.
    const settled: SettlementRecorder = async (tenantId, activity, at) => {
      const { recordSettledActivity } = await import('./dashboard/cli.js')
      await recordSettledActivity(store, tenantId, activity.action, activity.target, at).catch((error: unknown) => {
        process.stderr.write(
          `saiku: the period-end change is applied, but Activity could not record it: ${(error as Error).message}\n`,
        )
      })
    }
    if (action === 'show') {
      const view = billingView(await settledTenant(store, tenant.tenantId, nowMs, settled), nowMs)
      out.print(describe(slug, view), view)
      return
    }
    const result: BillingResult =
      action === 'plan'
        ? await changePlan(store, tenant.tenantId, tier, nowMs, settled)
        : action === 'cancel'
          ? await cancelAtPeriodEnd(store, tenant.tenantId, nowMs, settled)
          : await undoCancel(store, tenant.tenantId, nowMs, settled)
    if (result.activity !== undefined) {
      const { recordCliActivity } = await import('./dashboard/cli.js')
      await recordCliActivity(store, tenant.tenantId, result.activity.action, result.activity.target)
    }
    const what = result.activity === undefined ? 'Nothing to change' : `Done (${result.activity.action})`
    out.print(`${what}.\n${describe(slug, result.body)}`, { ...result.body, changed: result.activity !== undefined })
  } finally {
    await opened.close()
  }
}
