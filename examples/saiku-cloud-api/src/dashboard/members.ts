import { randomUUID } from 'node:crypto'
import { SaikuHttpError, type TenantAdminStore, type TenantRecord } from '@saiku/core'
import {
  ROLES,
  type ActorType,
  type DashboardStore,
  type Invitation,
  type Member,
  type MemberChange,
  type Role,
} from './store/index.js'
import { printable, quoted } from '../printable.js'
import { generatePassword, hashPassword, passwordProblem } from './shared/passwords.js'
import { NONCE, newToken, sessionDigest } from './shared/secrets.js'

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

function roleOf(input: string): Role {
  if (!(ROLES as readonly string[]).includes(input))
    throw new SaikuHttpError('invalid_request', `role: expected admin or viewer, got ${quoted(input.slice(0, 40))}.`)
  return input as Role
}

/** Whether a database error is its unique violation: the email is a member's already. */
function isUniqueViolation(error: unknown): boolean {
  const given = (error as { code?: unknown } | null)?.code
  const code = typeof given === 'string' ? given : ''
  return code === '23505' || code.startsWith('SQLITE_CONSTRAINT')
}

export async function addMember(
  dashboard: DashboardStore,
  tenant: TenantRecord,
  input: { email: string; role: string; password?: string },
  actor: Actor = CLI_ACTOR,
): Promise<AddedMember> {
  const email = normalizeEmail(input.email)
  roleOf(input.role)
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
    if (isUniqueViolation(error)) throw new SaikuHttpError('conflict', `A member with email ${email} exists already.`)
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

/**
 * The one rule of every removal and role change, the CLI's and the dashboard's: a tenant keeps an admin.
 * The store decides it in the change's own transaction; this says it.
 */
function changed(outcome: MemberChange, member: Member, doing: 'remove' | 'demote'): void {
  if (outcome === 'not_found') throw new SaikuHttpError('not_found', `No member with email ${printable(member.email)}.`)
  if (outcome === 'last_admin')
    throw new SaikuHttpError(
      'conflict',
      `${printable(member.email)} is the last admin of the tenant, so they cannot be ${doing === 'remove' ? 'removed' : 'made a viewer'}: make another member an admin first.`,
    )
}

/** A member by ID, only within `tenantId`: another tenant's member is answered as a missing one. */
export async function memberOfTenant(
  dashboard: DashboardStore,
  tenantId: string,
  memberId: string,
): Promise<Member | null> {
  const member = memberId.length > 100 ? null : await dashboard.findMember(memberId)
  return member !== null && member.tenantId === tenantId ? member : null
}

/** Removes the member, unless they are the tenant's last admin; every session of theirs ends with it. */
export async function removeMember(
  dashboard: DashboardStore,
  who: string | Member,
  actor: Actor = CLI_ACTOR,
): Promise<Member> {
  const member = typeof who === 'string' ? await memberByEmail(dashboard, who) : who
  changed(await dashboard.removeMember(member.memberId), member, 'remove')
  await dashboard.recordActivity({
    tenantId: member.tenantId,
    ...actor,
    action: 'member.removed',
    target: member.email,
  })
  return member
}

/**
 * Sets the member's role, unless that makes the tenant's last admin a viewer; their open sessions have the
 * new role from their next request. `changed` is false when they had that role already (nothing is recorded).
 */
export async function changeRole(
  dashboard: DashboardStore,
  who: string | Member,
  role: string,
  actor: Actor = CLI_ACTOR,
): Promise<{ member: Member; from: Role; changed: boolean }> {
  const to = roleOf(role)
  const member = typeof who === 'string' ? await memberByEmail(dashboard, who) : who
  if (member.role === to) return { member, from: member.role, changed: false }
  changed(await dashboard.setRole(member.memberId, to), member, 'demote')
  await dashboard.recordActivity({
    tenantId: member.tenantId,
    ...actor,
    action: 'member.role_changed',
    target: `${member.email}: ${member.role} → ${to}`,
  })
  return { member: { ...member, role: to }, from: member.role, changed: true }
}

/** How long an invitation's link works. */
export const INVITATION_TTL_MS = 24 * 60 * 60 * 1000
/** Pending invitations a tenant may hold: the Members page lists them all, and each is a row in the database. */
export const MAX_PENDING_INVITATIONS = 100

export interface CreatedInvitation {
  readonly invitation: Invitation
  /** The link's secret, 256 random bits: shown once, stored only as its SHA-256. */
  readonly token: string
}

/**
 * Invites an email to the tenant with a role. The token goes in a sign-up link shown once to whoever invited;
 * it works once, for 24 hours. A new invitation for the same email replaces a pending one.
 */
export async function inviteMember(
  dashboard: DashboardStore,
  tenant: TenantRecord,
  input: { email: string; role: string },
  actor: Actor = CLI_ACTOR,
  nowMs: number = Date.now(),
): Promise<CreatedInvitation> {
  const email = normalizeEmail(input.email)
  const role = roleOf(input.role)
  if ((await dashboard.findMemberByEmail(email)) !== null)
    throw new SaikuHttpError('conflict', `A member with email ${email} exists already.`)
  const token = newToken()
  const invitation: Invitation = {
    invitationId: randomUUID(),
    tenantId: tenant.tenantId,
    email,
    role,
    invitedBy: actor.actor,
    createdAt: new Date(nowMs),
    expiresAt: new Date(nowMs + INVITATION_TTL_MS),
  }
  if (!(await dashboard.addInvitation(invitation, sessionDigest(token), MAX_PENDING_INVITATIONS)))
    throw new SaikuHttpError(
      'conflict',
      `Your tenant has ${MAX_PENDING_INVITATIONS} pending invitations, the most it can hold: withdraw one on the Members page, or wait for one to be used or to expire.`,
    )
  await dashboard.recordActivity({
    tenantId: tenant.tenantId,
    ...actor,
    action: 'member.invited',
    target: `${email} (${role})`,
  })
  return { invitation, token }
}

/** Withdraws one of the tenant's pending invitations: its link stops working. */
export async function revokeInvitation(
  dashboard: DashboardStore,
  tenantId: string,
  invitationId: string,
  actor: Actor = CLI_ACTOR,
): Promise<Invitation> {
  const revoked = invitationId.length > 100 ? null : await dashboard.revokeInvitation(tenantId, invitationId)
  if (revoked === null) throw new SaikuHttpError('not_found', 'There is no pending invitation with this ID.')
  await dashboard.recordActivity({
    tenantId,
    ...actor,
    action: 'member.invitation_revoked',
    target: `${revoked.email} (${revoked.role})`,
  })
  return revoked
}

/** The invitation a sign-up link's token opens, while it is pending; null for any other token. */
export async function openInvitation(
  dashboard: DashboardStore,
  token: string,
  nowMs: number = Date.now(),
): Promise<Invitation | null> {
  // A token that newToken could not have made is no invitation, and never reaches the store.
  return NONCE.test(token) ? dashboard.findInvitation(sessionDigest(token), new Date(nowMs)) : null
}

/**
 * Uses an invitation: the invitee becomes a member with the invitation's tenant and role and the password they
 * chose, under the same rules as any. Null when the link is used, revoked or expired; of two uses at once,
 * one gets the member and the other null.
 */
export async function acceptInvitation(
  dashboard: DashboardStore,
  token: string,
  password: string,
  ip: string | null = null,
  nowMs: number = Date.now(),
): Promise<Member | null> {
  const problem = passwordProblem(password)
  if (problem !== null) throw new SaikuHttpError('invalid_request', `${problem[0]!.toUpperCase()}${problem.slice(1)}.`)
  const pending = await openInvitation(dashboard, token, nowMs)
  if (pending === null) return null
  const taken = () =>
    new SaikuHttpError(
      'conflict',
      `A member with email ${pending.email} exists already: sign in with that account, or ask an admin to invite another address.`,
    )
  // The invitation stays for its admin to see; sent again, it costs a lookup, never another 64 MiB hash.
  if ((await dashboard.findMemberByEmail(pending.email)) !== null) throw taken()
  let member: Member | null
  try {
    member = await dashboard.acceptInvitation(sessionDigest(token), new Date(nowMs), {
      memberId: randomUUID(),
      passwordHash: await hashPassword(password),
      createdAt: new Date(nowMs),
    })
  } catch (error) {
    if (isUniqueViolation(error)) throw taken()
    throw error
  }
  if (member === null) return null
  await dashboard.recordActivity({
    tenantId: member.tenantId,
    actorType: 'member',
    actor: member.email,
    action: 'member.joined',
    target: `${member.email} (${member.role})`,
    ip,
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
