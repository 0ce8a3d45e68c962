import { parseArgs } from 'node:util'
import { SaikuHttpError, type TenantAdminStore } from '@saiku/core'
import { readConfig } from '../config.js'
import { printable } from '../printable.js'
import { openStore } from '../store.js'
import { openDashboardStore, PERIOD_END_ACTOR, systemActorLabel, type DashboardStore } from './store/index.js'
import { addMember, changeRole, removeMember, resetPassword, resetTwoFactor } from './members.js'
import { DashboardUsageError, type CommandOutput } from './cli-usage.js'

// The operator CLI's member and activity commands: `saiku members …`, `saiku activity …`.

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY)
    throw new DashboardUsageError('--password-stdin: pipe the password in, e.g. printf %s "$PASSWORD" | saiku …')
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > 4096) throw new DashboardUsageError('--password-stdin: at most 1024 characters')
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '')
}

async function tenantBySlug(store: TenantAdminStore, slug: string | undefined) {
  if (slug === undefined || slug === '') throw new DashboardUsageError('--tenant is required')
  const tenant = await store.findTenantBySlug(slug)
  if (tenant === null) throw new SaikuHttpError('not_found', `No tenant with slug "${slug}".`)
  return tenant
}

function required(name: string, value: string | undefined): string {
  if (value === undefined || value === '') throw new DashboardUsageError(`--${name} is required`)
  return value
}

/** Records what the CLI did to a tenant's keys in its Activity log. */
export async function recordCliActivity(
  store: TenantAdminStore,
  tenantId: string,
  action: string,
  target: string | null,
): Promise<void> {
  const dashboard = await openDashboardStore(store)
  await dashboard.recordActivity({ tenantId, actorType: 'cli', actor: 'cli', action, target })
}

/** Records a change that a billing period's end applied, found by a CLI command, as the servers record it. */
export async function recordSettledActivity(
  store: TenantAdminStore,
  tenantId: string,
  action: string,
  target: string | null,
  at: Date,
): Promise<void> {
  const dashboard = await openDashboardStore(store)
  await dashboard.recordActivity({ tenantId, actorType: 'system', actor: PERIOD_END_ACTOR, action, target, at })
}

export async function runDashboardCommand(argv: string[], out: CommandOutput): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      json: { type: 'boolean', default: false },
      tenant: { type: 'string' },
      email: { type: 'string' },
      role: { type: 'string' },
      'password-stdin': { type: 'boolean', default: false },
      limit: { type: 'string' },
    },
  })
  out.json = values.json
  const [group, action, ...rest] = positionals
  const command = group === 'activity' ? 'activity' : `${group} ${action ?? ''}`.trim()
  const known = [
    'members add',
    'members list',
    'members set-role',
    'members remove',
    'members reset-password',
    'members reset-two-factor',
    'activity',
  ]
  if (!known.includes(command)) throw new DashboardUsageError(`unknown command "${command}"`)
  const extra = group === 'activity' ? [action, ...rest].filter((x) => x !== undefined) : rest
  if (extra.length > 0) throw new DashboardUsageError(`unexpected argument "${extra[0]}"`)
  if (values['password-stdin'] && command !== 'members add' && command !== 'members reset-password') {
    throw new DashboardUsageError('--password-stdin goes with members add and members reset-password')
  }
  let limit = 50
  if (values.limit !== undefined) {
    if (!/^[1-9]\d{0,3}$/.test(values.limit))
      throw new DashboardUsageError(`--limit: expected 1 to 9999, got ${JSON.stringify(values.limit)}`)
    limit = Number(values.limit)
  }
  const password = values['password-stdin'] ? await readStdin() : undefined

  const opened = await openStore(readConfig().databaseUrl, { watchChanges: false })
  try {
    await dashboardCommand(command, values, password, limit, opened.store, out)
  } catch (error) {
    // A value the command cannot take (an email, a role, a short password) is a usage mistake.
    if (error instanceof SaikuHttpError && error.wireCode === 'invalid_request')
      throw new DashboardUsageError(error.message)
    throw error
  } finally {
    await opened.close()
  }
}

async function dashboardCommand(
  command: string,
  values: { tenant?: string | undefined; email?: string | undefined; role?: string | undefined },
  password: string | undefined,
  limit: number,
  store: TenantAdminStore,
  out: CommandOutput,
): Promise<void> {
  {
    const dashboard: DashboardStore = await openDashboardStore(store)
    switch (command) {
      case 'members add': {
        const tenant = await tenantBySlug(store, values.tenant)
        const role = required('role', values.role)
        if (role !== 'admin' && role !== 'viewer')
          throw new DashboardUsageError(`--role: expected admin or viewer, got ${JSON.stringify(role)}`)
        const added = await addMember(dashboard, tenant, {
          email: required('email', values.email),
          role,
          ...(password === undefined ? {} : { password }),
        })
        const { member } = added
        const human =
          `Added ${member.role} ${printable(member.email)} to ${tenant.tenantSlug}.` +
          (added.generatedPassword === null
            ? ''
            : `\nPassword, shown this once; hand it over safely:\n${added.generatedPassword}`)
        out.print(human, {
          memberId: member.memberId,
          email: member.email,
          role: member.role,
          tenantSlug: tenant.tenantSlug,
          password: added.generatedPassword,
        })
        return
      }
      case 'members list': {
        const tenant = await tenantBySlug(store, values.tenant)
        const members = await dashboard.listMembers(tenant.tenantId)
        out.print(
          // Rows written before the email rule was this strict may hold anything: escaped, one line each.
          members.map((m) => `${printable(m.email)}\t${m.role}\tadded ${m.createdAt.toISOString()}`).join('\n') ||
            `No members in ${tenant.tenantSlug}.`,
          members.map((m) => ({
            memberId: m.memberId,
            email: m.email,
            role: m.role,
            createdAt: m.createdAt.toISOString(),
          })),
        )
        return
      }
      case 'members set-role': {
        const role = required('role', values.role)
        if (role !== 'admin' && role !== 'viewer')
          throw new DashboardUsageError(`--role: expected admin or viewer, got ${JSON.stringify(role)}`)
        const { member, from, changed } = await changeRole(dashboard, required('email', values.email), role)
        out.print(
          changed
            ? `${printable(member.email)} is now ${role} (was ${from}); their open sessions have the new role.`
            : `${printable(member.email)} is ${role} already; nothing changed.`,
          { email: member.email, role, changed },
        )
        return
      }
      case 'members remove': {
        const member = await removeMember(dashboard, required('email', values.email))
        out.print(`Removed ${printable(member.email)}; their sessions have ended.`, {
          email: member.email,
          removed: true,
        })
        return
      }
      case 'members reset-password': {
        const reset = await resetPassword(dashboard, required('email', values.email), password)
        const human =
          `New password set for ${printable(reset.member.email)}; their sessions have ended.` +
          (reset.generatedPassword === null ? '' : `\nPassword, shown this once:\n${reset.generatedPassword}`)
        out.print(human, { email: reset.member.email, password: reset.generatedPassword })
        return
      }
      case 'members reset-two-factor': {
        const reset = await resetTwoFactor(dashboard, required('email', values.email))
        out.print(
          reset.hadTwoFactor
            ? `Two-factor turned off for ${printable(reset.member.email)}; their sessions have ended. They sign in with their password alone, or set up two-factor again if their tenant requires it.`
            : `${printable(reset.member.email)} had no two-factor; their sessions have ended.`,
          { email: reset.member.email, twoFactor: false, hadTwoFactor: reset.hadTwoFactor },
        )
        return
      }
      case 'activity': {
        const tenant = await tenantBySlug(store, values.tenant)
        const events = await dashboard.listActivity(tenant.tenantId, limit)
        const who = (e: (typeof events)[number]) =>
          e.actorType === 'api_key'
            ? `key ${e.actor}`
            : e.actorType === 'cli'
              ? 'cli'
              : e.actorType === 'system'
                ? systemActorLabel(e.actor)
                : e.actor
        out.print(
          events
            .map((e) => [e.at.toISOString(), e.action, who(e), e.target ?? '-', e.ip ?? '-'].map(printable).join('\t'))
            .join('\n') || `No activity for ${tenant.tenantSlug}.`,
          events.map((e) => ({
            at: e.at.toISOString(),
            action: e.action,
            actorType: e.actorType,
            actor: e.actor,
            target: e.target,
            ip: e.ip,
          })),
        )
        return
      }
    }
  }
}
