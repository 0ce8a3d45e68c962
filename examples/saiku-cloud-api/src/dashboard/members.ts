import { randomUUID } from 'node:crypto'
import { SaikuHttpError, type TenantAdminStore, type TenantRecord } from '@saiku/core'
import { ROLES, type ActorType, type DashboardStore, type Member, type Role } from './store/index.js'
import { printable, quoted } from '../printable.js'
import { generatePassword, hashPassword, passwordProblem } from './shared/passwords.js'

// Member management, shared by the operator CLI and the server's first start.

// What the sign-in form's <input type="email"> submits (HTML's "valid email address"), with a dot in the
// domain: ASCII only, so an address the CLI accepts can always sign in, and holds no control, format or
// bidi character to print. A domain with accents goes in its xn-- form, as browsers send it.
const EMAIL =
  /^[a-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/

/**
 * Lower-cased and trimmed; throws invalid_request when the sign-in form could not submit it. The one
 * check of member emails, for the CLI and the dashboard alike.
 */
export function normalizeEmail(input: string): string {
  const email = input.trim().toLowerCase()
  if (email.length > 254 || !EMAIL.test(email))
    throw new SaikuHttpError(
      'invalid_request',
      `${quoted(input.slice(0, 80))} is not an email address the sign-in form accepts: ASCII letters, digits and .!#$%&'*+/=?^_\`{|}~- before the @, then a domain such as example.com (with accents, in its xn-- form).`,
    )
  return email
}

export interface Actor {
  readonly actorType: ActorType
  readonly actor: string
  readonly ip?: string | null
}

export const CLI_ACTOR: Actor = { actorType: 'cli', actor: 'cli' }

export interface AddedMember {
  readonly member: Member
  /** The password, when it was generated here: shown once. */
  readonly generatedPassword: string | null
}

export async function addMember(
  dashboard: DashboardStore,
  tenant: TenantRecord,
  input: { email: string; role: string; password?: string },
  actor: Actor = CLI_ACTOR,
): Promise<AddedMember> {
  const email = normalizeEmail(input.email)
  if (!(ROLES as readonly string[]).includes(input.role))
    throw new SaikuHttpError('invalid_request', `role: expected admin or viewer, got "${input.role}".`)
  const password = input.password ?? generatePassword()
  const problem = passwordProblem(password)
  if (problem !== null) throw new SaikuHttpError('invalid_request', `${problem}.`)
  if ((await dashboard.findMemberByEmail(email)) !== null)
    throw new SaikuHttpError('conflict', `A member with email ${email} exists already.`)
  const member: Member = {
    memberId: randomUUID(),
    tenantId: tenant.tenantId,
    email,
    role: input.role as Role,
    passwordHash: await hashPassword(password),
    createdAt: new Date(),
  }
  try {
    await dashboard.addMember(member)
  } catch (error) {
    const given = (error as { code?: unknown } | null)?.code
    const code = typeof given === 'string' ? given : ''
    if (code === '23505' || code.startsWith('SQLITE_CONSTRAINT'))
      throw new SaikuHttpError('conflict', `A member with email ${email} exists already.`)
    throw error
  }
  await dashboard.recordActivity({
    tenantId: tenant.tenantId,
    ...actor,
    action: 'member.added',
    target: `${email} (${member.role})`,
  })
  return { member, generatedPassword: input.password === undefined ? password : null }
}

async function memberByEmail(dashboard: DashboardStore, email: string): Promise<Member> {
  const given = email.trim().toLowerCase()
  let valid: string
  try {
    valid = normalizeEmail(email)
  } catch (error) {
    // A member added before the rule was this strict can still be found, as stored, to be removed or reset.
    const stored =
      given.length <= 254
        ? ((await dashboard.findMemberByEmail(given)) ?? (await dashboard.findMemberByEmail(email.trim())))
        : null
    if (stored === null) throw error
    return stored
  }
  const member = await dashboard.findMemberByEmail(valid)
  if (member === null) throw new SaikuHttpError('not_found', `No member with email ${printable(given)}.`)
  return member
}

/** Removes the member; every session of theirs ends with it. */
export async function removeMember(
  dashboard: DashboardStore,
  email: string,
  actor: Actor = CLI_ACTOR,
): Promise<Member> {
  const member = await memberByEmail(dashboard, email)
  if (!(await dashboard.removeMember(member.memberId)))
    throw new SaikuHttpError('not_found', `No member with email ${printable(member.email)}.`)
  await dashboard.recordActivity({
    tenantId: member.tenantId,
    ...actor,
    action: 'member.removed',
    target: member.email,
  })
  return member
}

/** Sets a new password (generated unless given); every session of the member ends. */
export async function resetPassword(
  dashboard: DashboardStore,
  email: string,
  password?: string,
  actor: Actor = CLI_ACTOR,
): Promise<AddedMember> {
  const member = await memberByEmail(dashboard, email)
  const chosen = password ?? generatePassword()
  const problem = passwordProblem(chosen)
  if (problem !== null) throw new SaikuHttpError('invalid_request', `${problem}.`)
  if (!(await dashboard.setPasswordHash(member.memberId, await hashPassword(chosen))))
    throw new SaikuHttpError('not_found', `No member with email ${printable(member.email)}.`)
  await dashboard.recordActivity({
    tenantId: member.tenantId,
    ...actor,
    action: 'member.password_reset',
    target: member.email,
  })
  return { member, generatedPassword: password === undefined ? chosen : null }
}

/**
 * Turns a member's two-factor off (their secret and recovery codes are forgotten) and ends every session of
 * theirs: for a member who lost both their phone and their recovery codes. If their tenant requires two-factor,
 * their next sign-in sets it up again.
 */
export async function resetTwoFactor(
  dashboard: DashboardStore,
  email: string,
  actor: Actor = CLI_ACTOR,
): Promise<{ member: Member; hadTwoFactor: boolean }> {
  const member = await memberByEmail(dashboard, email)
  const hadTwoFactor = await dashboard.disableTwoFactor(member.memberId)
  for (const session of await dashboard.listMemberSessions(member.memberId))
    await dashboard.deleteMemberSession(member.memberId, session.sessionDigest)
  await dashboard.recordActivity({
    tenantId: member.tenantId,
    ...actor,
    action: 'two_factor.reset',
    target: member.email,
  })
  return { member, hadTwoFactor }
}

export const DEMO_MEMBER_EMAIL = 'admin@acme.example'

/** On a freshly seeded demo tenant: its first admin, with a generated password. */
export async function seedDemoMember(
  dashboard: DashboardStore,
  store: TenantAdminStore,
): Promise<{ email: string; password: string } | null> {
  const tenant = await store.findTenantBySlug('acme')
  if (tenant === null || (await dashboard.listMembers(tenant.tenantId)).length > 0) return null
  try {
    const added = await addMember(dashboard, tenant, { email: DEMO_MEMBER_EMAIL, role: 'admin' })
    return { email: added.member.email, password: added.generatedPassword! }
  } catch (error) {
    if (error instanceof SaikuHttpError && error.wireCode === 'conflict') return null
    throw error
  }
}
