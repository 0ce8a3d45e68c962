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
  type UsageCounts,
  type UsageHistory,
  type WindowLimits,
} from '@saiku/core'
import { allowedAddressesProblem, labelProblem } from '@saiku/core/store'
import { parseRfc3339, PERMISSIONS } from './api.js'
import { ConfigError, readConfig } from './config.js'
import { createLimiter } from './limits.js'
import { loadQuotaCounts, readTierQuotas } from './quota-counts.js'
import { printable } from './printable.js'
import { openStore } from './store.js'
import {
  describeLimits,
  effectiveLimits,
  readOwnLimits,
  readTenantChange,
  setTenant,
  type TenantChange,
} from './tenant-settings.js'
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
import { isWebhooksCommand, WEBHOOKS_USAGE, WebhooksUsageError } from './webhooks/cli.js'

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
                 [--per-minute N --per-hour N [--per-day N] [--per-month N]] [--subscription none|trial|active]
                 [--connection NAME]
  tenants set --slug SLUG [--tier starter|team|business|enterprise]
              [--per-minute N --per-hour N [--per-day N] [--per-month N] | --tier-limits] [--subscription none|trial|active]
                             the tenant's own limits, given whole: a day or month quota left out is dropped;
                             each window at least the one before it; a day is a UTC day, a month runs from
                             the subscription's billing anchor, else the calendar month in UTC
  tenants list
  keys create --tenant SLUG --label LABEL [--permissions keys:read,keys:write,billing:write] [--test] [--expires-at 2030-01-31T12:00:00Z]
              [--allow 203.0.113.0/24,2001:db8::/32]
  keys update KEY_ID [--label LABEL] [--allow ADDRESS,... | --allow-any]
                             --allow: the IPv4/IPv6 addresses and CIDR ranges the key works from (at most 32)
  keys rotate KEY_ID --grace 0|SECONDS|1h|24h|7d
                             a new key with the same label, permissions, environment, addresses and expiry;
                             the old one keeps working for the grace (at most 30 days), then expires
  keys list --tenant SLUG
  keys revoke KEY_ID
  usage --tenant SLUG        what the tenant has used of each window, spending nothing
  usage --tenant SLUG --history [--since 24h|7d|30d]
                             requests over time, admitted and refused by reason, and by key: per hour
                             up to 2 days back, else per UTC day (default --since 7d, at most 90d);
                             as the servers last wrote them (every few seconds)
${BILLING_USAGE}
${DASHBOARD_USAGE}
${WEBHOOKS_USAGE}

Every command takes --json for output that scripts can read.
The store is DATABASE_URL (default: the example's data/saiku.db), as for the server.
usage reads the counts in REDIS_URL, as the servers keep them; without it, the day and month
the servers last saved (every QUOTA_FLUSH_MS), and no minute or hour. TIER_QUOTAS as for the server.`

/** A mistake in the command line: usage, exit code 2. */
class UsageError extends Error {}

const TIERS = ['starter', 'team', 'business', 'enterprise']
const SUBSCRIPTIONS: SubscriptionChoice[] = ['none', 'trial', 'active']

interface Output {
  json: boolean
  print(human: string, data: unknown): void
}

/** `--allow`: comma-separated addresses and CIDR ranges, checked as the key manager checks them. */
function allowList(value: string): string[] {
  const listed = value.split(',').map((entry) => entry.trim())
  if (listed.some((entry) => entry === ''))
    throw new UsageError(
      `--allow: expected a comma-separated list such as 203.0.113.0/24,2001:db8::/32, got ${JSON.stringify(value)}`,
    )
  const problem = allowedAddressesProblem(listed)
  if (problem !== null) throw new UsageError(`--allow: ${problem}`)
  return listed
}

const GRACE_UNITS: Record<string, number> = { s: 1, m: 60, h: 3_600, d: 86_400 }
/** The longest grace a rotation gives the old key: 30 days. */
const MAX_GRACE_SECONDS = 2_592_000

/** `--grace`: whole seconds, or a number of s, m, h or d (`24h`, `7d`); 0 ends the old key at once. */
function graceSeconds(value: string | undefined): number {
  if (value === undefined)
    throw new UsageError('--grace is required: how long the old key keeps working (0, 1h, 24h, 7d)')
  const match = /^(0|[1-9]\d{0,7})([smhd]?)$/.exec(value)
  const seconds = match === null ? NaN : Number(match[1]) * GRACE_UNITS[match[2] || 's']!
  if (!(seconds <= MAX_GRACE_SECONDS))
    throw new UsageError(
      `--grace: expected seconds or a number of s, m, h or d (such as 3600, 24h or 7d), at most 30 days, got ${JSON.stringify(value)}`,
    )
  return seconds
}

const HOUR_MS = 3_600_000
const MAX_HISTORY_DAYS = 90

/** `--since`: hours or days back, such as 24h or 7d (default 7d), at most 90 days. */
function historySinceMs(value: string | undefined): number {
  const match = /^([1-9]\d{0,4})([hd])$/.exec(value ?? '7d')
  const ms = match === null ? NaN : Number(match[1]) * (match[2] === 'h' ? HOUR_MS : 24 * HOUR_MS)
  if (!(ms <= MAX_HISTORY_DAYS * 24 * HOUR_MS))
    throw new UsageError(
      `--since: expected a number of hours or days (such as 24h, 7d or 30d), at most ${MAX_HISTORY_DAYS} days, got ${JSON.stringify(value)}`,
    )
  return ms
}

/** The history as a table: one line per hour or day, the totals, then each key. */
function historyText(slug: string, history: UsageHistory): string {
  const columns = ['admitted', 'rate limited', 'quota', 'forbidden', 'payment req.']
  const cells = (counts: UsageCounts): string =>
    [counts.admitted, counts.rateLimited, counts.quotaExceeded, counts.forbidden, counts.paymentRequired]
      .map((count, index) => String(count).padStart(columns[index]!.length))
      .join('  ')
  const width = history.granularity === 'hour' ? 16 : 10
  const when = (iso: string): string => iso.slice(0, width).replace('T', ' ')
  const head = `${'UTC'.padEnd(width)}  ${columns.join('  ')}`
  const lines = history.points.map((point) => `${when(point.start).padEnd(width)}  ${cells(point)}`)
  const keys = history.keys.map((key) => `  ${(key.keyId ?? '(no key ID)').padEnd(12)}  ${cells(key)}`)
  return [
    `${slug}: requests per ${history.granularity} from ${history.from} to ${history.to}`,
    head,
    ...lines,
    `${'total'.padEnd(width)}  ${cells(history.totals)}`,
    '',
    keys.length === 0 ? 'No requests by any key in this range.' : `By key:\n${keys.join('\n')}`,
  ].join('\n')
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
      'per-day': { type: 'string' },
      'per-month': { type: 'string' },
      'tier-limits': { type: 'boolean', default: false },
      subscription: { type: 'string' },
      connection: { type: 'string' },
      tenant: { type: 'string' },
      label: { type: 'string' },
      permissions: { type: 'string' },
      test: { type: 'boolean', default: false },
      'expires-at': { type: 'string' },
      allow: { type: 'string' },
      'allow-any': { type: 'boolean', default: false },
      grace: { type: 'string' },
      history: { type: 'boolean', default: false },
      since: { type: 'string' },
    },
  })
  out.json = values.json
  const [group, action, ...rest] = positionals
  if (values.help || group === undefined || group === 'help') {
    process.stdout.write(`${USAGE}\n`)
    return
  }
  const command = `${group} ${action ?? ''}`.trim()
  const known = [
    'tenants create',
    'tenants set',
    'tenants list',
    'keys create',
    'keys list',
    'keys revoke',
    'keys update',
    'keys rotate',
    'usage',
  ]
  if (!known.includes(command)) throw new UsageError(`unknown command "${command}"`)
  const takesKeyId = command === 'keys revoke' || command === 'keys update' || command === 'keys rotate'
  if (rest.length > (takesKeyId ? 1 : 0)) throw new UsageError(`unexpected argument "${rest.at(-1)}"`)
  // Options that only some commands take are refused elsewhere, never silently ignored.
  if (
    (values.allow !== undefined && command !== 'keys create' && command !== 'keys update') ||
    (values['allow-any'] && command !== 'keys update')
  )
    throw new UsageError(`--${values.allow === undefined ? 'allow-any' : 'allow'}: not an option of ${command}`)
  if (values.grace !== undefined && command !== 'keys rotate')
    throw new UsageError(`--grace: not an option of ${command}`)
  let keyId: string | undefined
  if (takesKeyId) {
    keyId = rest[0]
    if (keyId === undefined) throw new UsageError(`${command} needs a KEY_ID`)
    if (!isKeyId(keyId)) throw new UsageError(`${JSON.stringify(keyId)} is not a key ID (12 letters and digits)`)
  }
  const allowedAddresses = values.allow === undefined ? undefined : allowList(values.allow)
  let update: { label?: string; allowedAddresses?: string[] | null } | undefined
  if (command === 'keys update') {
    if (values.allow !== undefined && values['allow-any'])
      throw new UsageError('--allow and --allow-any exclude each other')
    update = {
      ...(values.label === undefined ? {} : { label: values.label }),
      ...(allowedAddresses === undefined ? {} : { allowedAddresses }),
      ...(values['allow-any'] ? { allowedAddresses: null } : {}),
    }
    if (Object.keys(update).length === 0) throw new UsageError('keys update needs --label, --allow or --allow-any')
    if (update.label !== undefined) {
      const problem = labelProblem(update.label)
      if (problem !== null) throw new UsageError(`--label: ${problem}`)
    }
  }
  const grace = command === 'keys rotate' ? graceSeconds(values.grace) : undefined
  if (values.history && command !== 'usage') throw new UsageError(`--history: not an option of ${command}`)
  if (values.since !== undefined && !values.history) throw new UsageError('--since goes with usage --history')
  const sinceMs = values.history ? historySinceMs(values.since) : undefined

  // Arguments are checked before the store is opened: a bad one is a usage error (exit 2).
  if (command === 'tenants create' || command === 'tenants set') {
    const slug = required('slug', values.slug)
    if (!isSlug(slug)) throw new UsageError(`--slug: expected ${SLUG_RULE}, got ${JSON.stringify(slug)}`)
  }
  if (command === 'tenants create' && values.connection !== undefined) {
    const problem = connectionNameProblem(values.connection)
    if (problem !== null) throw new UsageError(`--connection: ${problem}`)
  }
  const ownLimits = {
    perMinute: values['per-minute'],
    perHour: values['per-hour'],
    perDay: values['per-day'],
    perMonth: values['per-month'],
  }
  let change: TenantChange | undefined
  let createLimits: WindowLimits | undefined
  if (command === 'tenants create') createLimits = readOwnLimits(ownLimits)
  if (command === 'tenants set') {
    const other = (['connection', 'tenant', 'label', 'permissions', 'expires-at'] as const).find(
      (name) => values[name] !== undefined,
    )
    if (other !== undefined || values.test) throw new UsageError(`--${other ?? 'test'}: not an option of tenants set`)
    change = readTenantChange({
      tier: values.tier,
      ...ownLimits,
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
          limits: createLimits ?? null,
          ...(values.connection === undefined ? {} : { connectionName: values.connection }),
        })
        const limits = tenant.limits == null ? '' : `, ${describeLimits(tenant.limits)}`
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
        const summary = `${after.tier}, ${describeLimits(limits)} (${own}), subscription ${after.subscription.status}`
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
          tenants
            .map(
              (t) =>
                `${t.tenantSlug}\t${t.tier}\t${t.subscription.status}\t${t.tenantId}\t${t.limits == null ? 'tier limits' : describeLimits(t.limits)}`,
            )
            .join('\n') || 'No tenants.',
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
          ...(allowedAddresses === undefined ? {} : { allowedAddresses }),
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
                `${k.keyId}\t${displayLabel(k.label)}\t${k.permissions.join(',') || '-'}\tcreated ${k.createdAt.toISOString()}\tlast used ${k.lastUsedAt?.toISOString() ?? 'never'}` +
                `\tfrom ${k.allowedAddresses?.join(',') || 'any address'}` +
                (k.expiresAt === null ? '' : `\texpires ${k.expiresAt.toISOString()}`),
            )
            .join('\n') || `No keys for ${tenant.tenantSlug}.`,
          listed,
        )
        return
      }
      case 'usage': {
        const tenant = await tenantBySlug(store, required('tenant', values.tenant))
        if (sinceMs !== undefined) {
          // Reads what the servers wrote; this process records nothing.
          const reader = createAuthenticator(store, { usageHistory: { flushIntervalMs: 0, retentionDays: 0 } })
          try {
            const nowMs = Date.now()
            const history = await reader.usageHistory(tenant.tenantId, {
              from: nowMs - sinceMs,
              to: nowMs,
              granularity: sinceMs <= 2 * 24 * HOUR_MS ? 'hour' : 'day',
            })
            out.print(historyText(tenant.tenantSlug, history), history)
          } finally {
            reader.close()
          }
          return
        }
        const { redisUrl } = readConfig()
        const tiers = readTierQuotas(process.env.TIER_QUOTAS)
        const limiter = await createLimiter(redisUrl, store)
        // Without Redis the servers save the day and month in the database: read as they last saved them.
        limiter.memory?.restoreQuotaCounts(await loadQuotaCounts(store))
        const auth = createAuthenticator(store, { limiter: limiter.options, ...(tiers === undefined ? {} : { tiers }) })
        try {
          const usage = await auth.usage(tenant.tenantId)
          if (usage === null) throw new SaikuHttpError('not_found', `No tenant with slug "${tenant.tenantSlug}".`)
          if (redisUrl === undefined)
            process.stderr.write(
              'saiku: without REDIS_URL each server counts the minute and hour in its own memory, which no other process can read (shown here unused); the day and month are as the servers last saved them.\n',
            )
          const line = (w: typeof usage.minute) =>
            w === null
              ? 'not counted by this limiter'
              : `${w.used} of ${w.quota} used, ${w.remaining} remaining, resets in ${w.resetSeconds} s`
          // The quotas reset on a date: say which, in UTC.
          const quota = (w: typeof usage.minute) =>
            w === null
              ? 'not counted by this limiter'
              : `${w.used} of ${w.quota} used, ${w.remaining} remaining, resets ${new Date(Math.round((Date.now() + w.resetSeconds * 1000) / 60_000) * 60_000).toISOString().slice(0, 16).replace('T', ' ')} UTC`
          out.print(
            `${tenant.tenantSlug} (${tenant.tenantId}), ${tenant.tier}:\n  minute: ${line(usage.minute)}\n  hour:   ${line(usage.hour)}` +
              (usage.day === undefined ? '' : `\n  day:    ${quota(usage.day)}`) +
              (usage.month === undefined ? '' : `\n  month:  ${quota(usage.month)}`),
            usage,
          )
        } finally {
          auth.close()
          await limiter.close()
        }
        return
      }
      case 'keys update': {
        const record = await store.findKey(keyId!)
        const updated = record === null ? null : await keys.update(record.tenantId, keyId!, update!)
        if (record === null || updated === null) throw new SaikuHttpError('not_found', `No live key ${keyId}.`)
        await recordCliActivity(store, record.tenantId, 'key.updated', keyId!)
        out.print(
          `Updated key ${keyId} ${displayLabel(updated.label)}: works from ${updated.allowedAddresses?.join(', ') || 'any address'}.`,
          updated,
        )
        return
      }
      case 'keys rotate': {
        const record = await store.findKey(keyId!)
        const rotated = record === null ? null : await keys.rotate(record.tenantId, keyId!, { graceSeconds: grace! })
        if (record === null || rotated === null) throw new SaikuHttpError('not_found', `No live key ${keyId}.`)
        await recordCliActivity(store, record.tenantId, 'key.rotated', `${keyId} → ${rotated.keyId}`)
        const ends = rotated.previousKey.expiresAt
        out.print(
          `Rotated key ${keyId} into ${rotated.keyId} ${displayLabel(rotated.label)}; ${keyId} ${
            ends === null
              ? 'works until revoked'
              : ends.getTime() <= Date.now()
                ? 'no longer works'
                : `works until ${ends.toISOString()}`
          }.\nSecret, shown this once; copy it now:\n${rotated.key}`,
          { ...rotated, key: undefined, secret: rotated.key },
        )
        return
      }
      case 'keys revoke': {
        const record = await store.findKey(keyId!)
        if (record === null || !(await keys.revoke(record.tenantId, keyId!)))
          throw new SaikuHttpError('not_found', `No live key ${keyId}.`)
        await recordCliActivity(store, record.tenantId, 'key.revoked', keyId!)
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
    else if (isWebhooksCommand(argv)) await (await import('./webhooks/cli.js')).runWebhooksCommand(argv, out)
    else await run(argv, out)
    return 0
  } catch (error) {
    // A value the store side refuses as invalid (400) is a bad argument as well.
    const usage =
      error instanceof UsageError ||
      error instanceof DashboardUsageError ||
      error instanceof BillingUsageError ||
      error instanceof WebhooksUsageError ||
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
