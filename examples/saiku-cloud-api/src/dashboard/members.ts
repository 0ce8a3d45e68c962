import { randomUUID } from 'node:crypto'
import { SaikuHttpError, type TenantAdminStore, type TenantRecord } from '@saiku/core'
import { ROLES, type ActorType, type DashboardStore, type Member, type Role } from './db.js'
import { generatePassword, hashPassword, passwordProblem } from './passwords.js'

// Member management, shared by the operator CLI and the server's first start.

const EMAIL =
  /^[^\s@<>()[\]\\,;:"]{1,64}@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/

/** Lower-cased and trimmed; throws invalid_request when it is not an address. */
export function normalizeEmail(input: string): string {
  const email = input.trim().toLowerCase()
  if (email.length > 254 || !EMAIL.test(email))
    throw new SaikuHttpError('invalid_request', `"${input.slice(0, 80)}" is not an email address.`)
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
  const member = await dashboard.findMemberByEmail(normalizeEmail(email))
  if (member === null) throw new SaikuHttpError('not_found', `No member with email ${email.trim().toLowerCase()}.`)
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
    throw new SaikuHttpError('not_found', `No member with email ${member.email}.`)
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
    throw new SaikuHttpError('not_found', `No member with email ${member.email}.`)
  await dashboard.recordActivity({
    tenantId: member.tenantId,
    ...actor,
    action: 'member.password_reset',
    target: member.email,
  })
  return { member, generatedPassword: password === undefined ? chosen : null }
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
