import { parseArgs } from 'node:util'
import {
  createAuthenticator,
  createKeyManager,
  isKeyId,
  SaikuConfigError,
  SaikuHttpError,
  SaikuInputError,
  SaikuNotFoundError,
  type TenantAdminStore,
} from '@saiku/core'
import { labelProblem } from '@saiku/core/store'
import { parseRfc3339, PERMISSIONS } from './api.js'
import { ConfigError, readConfig } from './config.js'
import { createLimiter } from './limits.js'
import { printable } from './printable.js'
import { openStore } from './store.js'
import { effectiveLimits, readTenantChange, setTenant, type TenantChange } from './tenant-settings.js'
import {
  connectionNameProblem,
  createTenant,
  DEMO_PERMISSIONS,
  isSlug,
  SLUG_RULE,
  type SubscriptionChoice,
} from './tenants.js'
import { DASHBOARD_USAGE, DashboardUsageError, isDashboardCommand } from './dashboard/cli-usage.js'
import { BILLING_USAGE, BillingUsageError, isBillingCommand } from './billing-cli.js'

/** Records what the CLI did to a tenant's keys in its Activity log. */
async function recordCliActivity(
  store: TenantAdminStore,
  tenantId: string,
  action: string,
  target: string,
): Promise<void> {
  const { recordCliActivity: record } = await import('./dashboard/cli.js')
  await record(store, tenantId, action, target)
}

export const USAGE = `Usage: saiku <command> [options]

  tenants create --slug SLUG --tier starter|team|business|enterprise
                 [--per-minute N --per-hour N] [--subscription none|trial|active] [--connection NAME]
  tenants set --slug SLUG [--tier starter|team|business|enterprise] [--per-minute N --per-hour N | --tier-limits]
              [--subscription none|trial|active]
  tenants list
  keys create --tenant SLUG --label LABEL [--permissions keys:read,keys:write,billing:write] [--test] [--expires-at 2030-01-31T12:00:00Z]
  keys list --tenant SLUG
  keys revoke KEY_ID
  usage --tenant SLUG        what the tenant has used of each window, spending nothing
${BILLING_USAGE}
${DASHBOARD_USAGE}

Every command takes --json for output that scripts can read.
The store is DATABASE_URL (default: the example's data/saiku.db), as for the server.
usage reads the counts in REDIS_URL, as the servers keep them; without it there are none to read.`

/** A mistake in the command line: usage, exit code 2. */
class UsageError extends Error {}

const TIERS = ['starter', 'team', 'business', 'enterprise']
const SUBSCRIPTIONS: SubscriptionChoice[] = ['none', 'trial', 'active']

interface Output {
  json: boolean
  print(human: string, data: unknown): void
}

function integer(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  if (!/^[1-9]\d{0,15}$/.test(value))
    throw new UsageError(`--${name}: expected a positive integer, got ${JSON.stringify(value)}`)
  return Number(value)
}

function required(name: string, value: string | undefined): string {
  if (value === undefined || value === '') throw new UsageError(`--${name} is required`)
  return value
}

/**
 * A label as a JSON string with every control and format character (and any lone
 * surrogate) escaped, so a stored label can never rewrite or reorder the terminal.
 */
function displayLabel(label: string): string {
  return escapeUnsafe(JSON.stringify(label))
}

/**
 * JSON text with the characters JSON.stringify leaves raw (DEL, C1, format
 * characters) escaped too; C0 it escapes itself, so a raw one is layout.
 */
function escapeUnsafe(json: string): string {
  return json.replace(
    /[\u007f-\u009f\p{Cf}\uD800-\uDFFF]/gu,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  )
}

async function tenantBySlug(store: TenantAdminStore, slug: string) {
  const tenant = await store.findTenantBySlug(slug)
  if (tenant === null) throw new SaikuHttpError('not_found', `No tenant with slug "${slug}".`)
  return tenant
}

async function run(argv: string[], out: Output): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
      slug: { type: 'string' },
      tier: { type: 'string' },
      'per-minute': { type: 'string' },
      'per-hour': { type: 'string' },
      'tier-limits': { type: 'boolean', default: false },
      subscription: { type: 'string' },
      connection: { type: 'string' },
      tenant: { type: 'string' },
      label: { type: 'string' },
      permissions: { type: 'string' },
      test: { type: 'boolean', default: false },
      'expires-at': { type: 'string' },
    },
  })
  out.json = values.json
  const [group, action, ...rest] = positionals
  if (values.help || group === undefined || group === 'help') {
    process.stdout.write(`${USAGE}\n`)
    return
  }
  const command = `${group} ${action ?? ''}`.trim()
  const known = ['tenants create', 'tenants set', 'tenants list', 'keys create', 'keys list', 'keys revoke', 'usage']
  if (!known.includes(command)) throw new UsageError(`unknown command "${command}"`)
  if (rest.length > (command === 'keys revoke' ? 1 : 0)) throw new UsageError(`unexpected argument "${rest.at(-1)}"`)

  // Arguments are checked before the store is opened: a bad one is a usage error (exit 2).
  if (command === 'tenants create' || command === 'tenants set') {
    const slug = required('slug', values.slug)
    if (!isSlug(slug)) throw new UsageError(`--slug: expected ${SLUG_RULE}, got ${JSON.stringify(slug)}`)
  }
  if (command === 'tenants create' && values.connection !== undefined) {
    const problem = connectionNameProblem(values.connection)
    if (problem !== null) throw new UsageError(`--connection: ${problem}`)
  }
  let change: TenantChange | undefined
  if (command === 'tenants set') {
    const other = (['connection', 'tenant', 'label', 'permissions', 'expires-at'] as const).find(
      (name) => values[name] !== undefined,
    )
    if (other !== undefined || values.test) throw new UsageError(`--${other ?? 'test'}: not an option of tenants set`)
    change = readTenantChange({
      tier: values.tier,
      perMinute: values['per-minute'],
      perHour: values['per-hour'],
      tierLimits: values['tier-limits'],
      subscription: values.subscription,
    })
  }
  let expiresAt: Date | null = null
  let permissions: string[] = DEMO_PERMISSIONS
  if (command === 'keys create') {
    const problem = labelProblem(required('label', values.label))
    if (problem !== null) throw new UsageError(`--label: ${problem}`)
    if (values.permissions !== undefined) {
      const listed = values.permissions.split(',').map((p) => p.trim())
      if (listed.some((p) => p === ''))
        throw new UsageError(
          `--permissions: expected a comma-separated list such as keys:read,keys:write, got ${JSON.stringify(values.permissions)}`,
        )
      permissions = [...new Set(listed)]
    }
    const unknown = permissions.filter((p) => !(PERMISSIONS as readonly string[]).includes(p) && p !== '*')
    if (unknown.length > 0)
      throw new UsageError(`--permissions: unknown ${unknown.join(', ')} (known: ${PERMISSIONS.join(', ')})`)
    if (values['expires-at'] !== undefined) {
      expiresAt = parseRfc3339(values['expires-at'])
      if (expiresAt === null)
        throw new UsageError(
          `--expires-at: expected an RFC 3339 date-time such as 2030-01-31T12:00:00Z, got ${JSON.stringify(values['expires-at'])}`,
        )
      if (expiresAt.getTime() <= Date.now())
        throw new UsageError(`--expires-at: expected a time in the future, got ${JSON.stringify(values['expires-at'])}`)
    }
  }

  const opened = await openStore(readConfig().databaseUrl, { watchChanges: false })
  try {
    const { store } = opened
    const keys = createKeyManager(store)
    switch (command) {
      case 'tenants create': {
        const tier = required('tier', values.tier)
        if (!TIERS.includes(tier))
          throw new UsageError(`--tier: expected one of ${TIERS.join(', ')}, got ${JSON.stringify(tier)}`)
        const perMinute = integer('per-minute', values['per-minute'])
        const perHour = integer('per-hour', values['per-hour'])
        if ((perMinute === undefined) !== (perHour === undefined))
          throw new UsageError('--per-minute and --per-hour go together')
        const subscription = (values.subscription ?? 'trial') as SubscriptionChoice
        if (!SUBSCRIPTIONS.includes(subscription)) {
          throw new UsageError(
            `--subscription: expected one of ${SUBSCRIPTIONS.join(', ')}, got ${JSON.stringify(values.subscription)}`,
          )
        }
        const tenant = await createTenant(store, {
          slug: required('slug', values.slug),
          tier,
          subscription,
          limits: perMinute === undefined ? null : { perMinute, perHour: perHour! },
          ...(values.connection === undefined ? {} : { connectionName: values.connection }),
        })
        const limits = tenant.limits == null ? '' : `, ${tenant.limits.perMinute}/min and ${tenant.limits.perHour}/h`
        out.print(
          `Created tenant ${tenant.tenantSlug} (${tenant.tenantId}): ${tenant.tier}${limits}, subscription ${tenant.subscription.status}.`,
          tenant,
        )
        return
      }
      case 'tenants set': {
        const slug = required('slug', values.slug)
        const result = await setTenant(store, slug, change!)
        if (result === null) throw new SaikuHttpError('not_found', `No tenant with slug "${slug}".`)
        const { before, after, changed } = result
        const limits = effectiveLimits(after)
        const own = after.limits == null ? `the ${after.tier} tier's` : 'its own'
        const summary = `${after.tier}, ${limits.perMinute}/min and ${limits.perHour}/h (${own}), subscription ${after.subscription.status}`
        out.print(
          changed
            ? `Updated tenant ${after.tenantSlug} (${after.tenantId}): ${summary}; was ${before.tier}, subscription ${before.subscription.status}.`
            : `Tenant ${after.tenantSlug} (${after.tenantId}) already is ${summary}; nothing written.`,
          { ...after, effectiveLimits: limits, changed },
        )
        return
      }
      case 'tenants list': {
        const tenants = await store.listTenants()
        out.print(
          tenants.map((t) => `${t.tenantSlug}\t${t.tier}\t${t.subscription.status}\t${t.tenantId}`).join('\n') ||
            'No tenants.',
          tenants,
        )
        return
      }
      case 'keys create': {
        const tenant = await tenantBySlug(store, required('tenant', values.tenant))
        const created = await keys.create(tenant.tenantId, {
          label: required('label', values.label),
          permissions,
          environment: values.test ? 'test' : 'live',
          expiresAt,
        })
        await recordCliActivity(store, tenant.tenantId, 'key.created', created.keyId)
        out.print(
          `Created key ${created.keyId} ${displayLabel(created.label)} for ${tenant.tenantSlug} (permissions: ${created.permissions.join(', ') || 'none'}).\n` +
            `Secret, shown this once; copy it now:\n${created.key}`,
          { ...created, key: undefined, secret: created.key, tenantSlug: tenant.tenantSlug },
        )
        return
      }
      case 'keys list': {
        const tenant = await tenantBySlug(store, required('tenant', values.tenant))
        const listed = await keys.list(tenant.tenantId)
        out.print(
          listed
            .map(
              (k) =>
                `${k.keyId}\t${displayLabel(k.label)}\t${k.permissions.join(',') || '-'}\tcreated ${k.createdAt.toISOString()}\tlast used ${k.lastUsedAt?.toISOString() ?? 'never'}`,
            )
            .join('\n') || `No keys for ${tenant.tenantSlug}.`,
          listed,
        )
        return
      }
      case 'usage': {
        const tenant = await tenantBySlug(store, required('tenant', values.tenant))
        const { redisUrl } = readConfig()
        const limiter = await createLimiter(redisUrl, store)
        const auth = createAuthenticator(store, { limiter: limiter.options })
        try {
          const usage = await auth.usage(tenant.tenantId)
          if (usage === null) throw new SaikuHttpError('not_found', `No tenant with slug "${tenant.tenantSlug}".`)
          if (redisUrl === undefined)
            process.stderr.write(
              "saiku: without REDIS_URL each server counts in its own memory; these counts are this process's, not a server's.\n",
            )
          const line = (w: typeof usage.minute) =>
            w === null
              ? 'not counted by this limiter'
              : `${w.used} of ${w.quota} used, ${w.remaining} remaining, resets in ${w.resetSeconds} s`
          out.print(
            `${tenant.tenantSlug} (${tenant.tenantId}), ${tenant.tier}:\n  minute: ${line(usage.minute)}\n  hour:   ${line(usage.hour)}`,
            usage,
          )
        } finally {
          auth.close()
          await limiter.close()
        }
        return
      }
      case 'keys revoke': {
        const keyId = rest[0]
        if (keyId === undefined) throw new UsageError('keys revoke needs a KEY_ID')
        if (!isKeyId(keyId)) throw new UsageError(`${JSON.stringify(keyId)} is not a key ID (12 letters and digits)`)
        const record = await store.findKey(keyId)
        if (record === null || !(await keys.revoke(record.tenantId, keyId)))
          throw new SaikuHttpError('not_found', `No live key ${keyId}.`)
        await recordCliActivity(store, record.tenantId, 'key.revoked', keyId)
        out.print(`Revoked key ${keyId}.`, { keyId, revoked: true })
        return
      }
    }
  } finally {
    await opened.close()
  }
}

/** Runs one command; returns the exit code (0 done, 1 failed, 2 bad usage). */
export async function main(argv: string[]): Promise<number> {
  const out: Output = {
    json: argv.includes('--json'),
    print(human, data) {
      process.stdout.write(`${this.json ? escapeUnsafe(JSON.stringify(data, null, 2)) : human}\n`)
    },
  }
  try {
    if (isDashboardCommand(argv)) await (await import('./dashboard/cli.js')).runDashboardCommand(argv, out)
    else if (isBillingCommand(argv)) await (await import('./billing-cli.js')).runBillingCommand(argv, out)
    else await run(argv, out)
    return 0
  } catch (error) {
    // A value the store side refuses as invalid (400) is a bad argument as well.
    const usage =
      error instanceof UsageError ||
      error instanceof DashboardUsageError ||
      error instanceof BillingUsageError ||
      (error instanceof SaikuHttpError && error.wireCode === 'invalid_request') ||
      error instanceof SaikuInputError ||
      (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')
    const told =
      error instanceof SaikuHttpError ||
      error instanceof SaikuNotFoundError ||
      error instanceof SaikuConfigError ||
      error instanceof ConfigError
    const said =
      error instanceof UsageError || error instanceof DashboardUsageError || told || usage
        ? (error as Error).message
        : `unexpected failure: ${(error as Error).message}`
    // A message may quote what was given or stored: it reaches the terminal escaped, line by line.
    const message = said.split('\n').map(printable).join('\n')
    // The wire code where there is one ("not_found"), as the API would answer.
    const code =
      error instanceof SaikuHttpError
        ? error.wireCode
        : error instanceof SaikuNotFoundError
          ? 'not_found'
          : (error as { code?: string }).code
    if (out.json) process.stderr.write(`${JSON.stringify({ error: usage ? 'usage' : (code ?? 'failed'), message })}\n`)
    else process.stderr.write(`saiku: ${message}\n${usage ? '\nRun "saiku help" for usage.\n' : ''}`)
    return usage ? 2 : 1
  }
}

process.exitCode = await main(process.argv.slice(2))
