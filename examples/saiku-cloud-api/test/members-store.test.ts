import { randomUUID } from 'node:crypto'
import { SaikuHttpError, type TenantRecord } from '@saiku/core'
import { PostgresKeyStore } from '@saiku/postgres'
import { SqliteKeyStore } from '@saiku/sqlite'
import fc from 'fast-check'
import pg from 'pg'
import { describe, expect, it, vi } from 'vitest'
import {
  acceptInvitation,
  changeRole,
  INVITATION_TTL_MS,
  inviteMember,
  MAX_PENDING_INVITATIONS,
  memberOfTenant,
  openInvitation,
  removeMember,
  revokeInvitation,
} from '../src/dashboard/members.js'
import { sessionDigest } from '../src/dashboard/shared/secrets.js'
import { openDashboardStore, type DashboardStore, type Member, type Role } from '../src/dashboard/store/index.js'
import { postgresUrl } from './services.js'

// Password hashes are counted: each is 64 MiB and a good part of a second of a CPU.
const hashes = vi.hoisted(() => ({ count: 0 }))
vi.mock('../src/dashboard/shared/passwords.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../src/dashboard/shared/passwords.js')>()
  return {
    ...original,
    hashPassword: (password: string) => {
      hashes.count++
      return original.hashPassword(password)
    },
  }
})

// The member rules the CLI and the dashboard share, against both databases: invitations (hashed, single use,
// 24 h, bound to a tenant and role), and the last admin, who can be neither removed nor made a viewer.

const T0 = Date.UTC(2026, 11, 6, 12, 0, 0)
const PASSWORD = 'a-good-long-password'

const tenantRecord = (tenantId: string): TenantRecord => ({
  tenantId,
  tenantSlug: tenantId,
  tier: 'team',
  connectionName: 'x',
  subscription: { status: 'active', trialEndsAt: null },
  limits: null,
})

interface Opened {
  dashboard: DashboardStore
  /** A new, empty tenant; returns its ID. */
  addTenant: () => Promise<string>
  /** What the invitations table holds, every column, for checking that no token is stored. */
  rawInvitations: () => Promise<Record<string, unknown>[]>
  close: () => Promise<void>
}

async function putTenant(store: { putTenant(tenant: TenantRecord): Promise<unknown> }): Promise<string> {
  const tenantId = `t-${randomUUID()}`
  await store.putTenant(tenantRecord(tenantId))
  return tenantId
}

async function open(name: string): Promise<Opened> {
  if (name === 'SQLite') {
    const store = new SqliteKeyStore(':memory:', { watchIntervalMs: 0 })
    for (const id of ['acme', 'globex']) await store.putTenant(tenantRecord(id))
    const dashboard = await openDashboardStore(store)
    return {
      dashboard,
      addTenant: () => putTenant(store),
      rawInvitations: async () =>
        store.db.prepare<[], Record<string, unknown>>('SELECT * FROM saiku_invitations').all(),
      close: async () => store.close(),
    }
  }
  const schema = `saiku_members_${randomUUID().replaceAll('-', '').slice(0, 12)}`
  const pool = new pg.Pool({ connectionString: postgresUrl, max: 8 })
  const store = new PostgresKeyStore({ pool, schema, listen: false })
  for (const id of ['acme', 'globex']) await store.putTenant(tenantRecord(id))
  const dashboard = await openDashboardStore(store)
  return {
    dashboard,
    addTenant: () => putTenant(store),
    rawInvitations: async () => (await pool.query(`SELECT * FROM "${schema}".saiku_invitations`)).rows,
    async close() {
      await store.close()
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      await pool.end()
    },
  }
}

async function member(dashboard: DashboardStore, tenantId: string, email: string, role: Role): Promise<Member> {
  const added: Member = {
    memberId: randomUUID(),
    tenantId,
    email,
    role,
    passwordHash: 'x',
    createdAt: new Date(T0),
  }
  await dashboard.addMember(added)
  return added
}

async function refusal(promise: Promise<unknown>): Promise<{ wireCode: string; message: string }> {
  try {
    await promise
  } catch (error) {
    if (error instanceof SaikuHttpError) return { wireCode: error.wireCode, message: error.message }
    throw error
  }
  throw new Error('expected a refusal')
}

describe.each([
  { name: 'SQLite', skip: false },
  { name: 'PostgreSQL', skip: postgresUrl === undefined },
])('members, stored ($name)', ({ name, skip }) => {
  it.skipIf(skip)(
    'an invitation is stored hashed, works once even when raced, for its tenant and role, and for 24 hours',
    async () => {
      const { dashboard, rawInvitations, close } = await open(name)
      try {
        const acme = tenantRecord('acme')
        const admin = { actorType: 'member' as const, actor: 'boss@acme.example' }
        const { invitation, token } = await inviteMember(
          dashboard,
          acme,
          { email: ' New@Acme.Example ', role: 'viewer' },
          admin,
          T0,
        )
        expect(token).toMatch(/^[\w-]{43}$/)
        expect(invitation).toMatchObject({ tenantId: 'acme', email: 'new@acme.example', role: 'viewer' })
        expect(invitation.expiresAt.getTime() - T0).toBe(INVITATION_TTL_MS)
        // Only the digest is kept: the table holds no token.
        const rows = await rawInvitations()
        expect(rows).toHaveLength(1)
        expect(JSON.stringify(rows)).not.toContain(token)
        expect(rows[0]!.token_digest).toBe(sessionDigest(token))

        // Five uses at once: exactly one makes the member.
        const raced = await Promise.all(
          Array.from({ length: 5 }, () => acceptInvitation(dashboard, token, PASSWORD, '127.0.0.1', T0 + 1000)),
        )
        const made = raced.filter((m) => m !== null)
        expect(made).toHaveLength(1)
        expect(made[0]).toMatchObject({ tenantId: 'acme', email: 'new@acme.example', role: 'viewer' })
        expect((await dashboard.listMembers('acme')).map((m) => m.email)).toEqual(['new@acme.example'])
        expect(await acceptInvitation(dashboard, token, PASSWORD, null, T0 + 2000)).toBeNull()
        expect(await openInvitation(dashboard, token, T0 + 2000)).toBeNull()
        expect(await rawInvitations()).toHaveLength(0)
        const activity = await dashboard.listActivity('acme', 10)
        expect(activity.map((e) => [e.action, e.actor, e.target])).toEqual([
          ['member.joined', 'new@acme.example', 'new@acme.example (viewer)'],
          ['member.invited', 'boss@acme.example', 'new@acme.example (viewer)'],
        ])

        // 24 hours to the millisecond, on the injected clock.
        const late = await inviteMember(dashboard, acme, { email: 'late@acme.example', role: 'admin' }, admin, T0)
        expect(await openInvitation(dashboard, late.token, T0 + INVITATION_TTL_MS - 1)).not.toBeNull()
        expect(await openInvitation(dashboard, late.token, T0 + INVITATION_TTL_MS)).toBeNull()
        expect(await acceptInvitation(dashboard, late.token, PASSWORD, null, T0 + INVITATION_TTL_MS)).toBeNull()
        expect(await dashboard.findMemberByEmail('late@acme.example')).toBeNull()
        const inTime = await acceptInvitation(dashboard, late.token, PASSWORD, null, T0 + INVITATION_TTL_MS - 1)
        expect(inTime).toMatchObject({ tenantId: 'acme', role: 'admin' })

        // A token that is not one, or a near miss, opens nothing.
        expect(await openInvitation(dashboard, 'x'.repeat(43), T0)).toBeNull()
        expect(await openInvitation(dashboard, `${late.token}'--`, T0)).toBeNull()
      } finally {
        await close()
      }
    },
  )

  it.skipIf(skip)(
    'an invitation is refused for a member’s email, replaced by a newer one, revoked only in its tenant',
    async () => {
      const { dashboard, close } = await open(name)
      try {
        const acme = tenantRecord('acme')
        await member(dashboard, 'globex', 'taken@globex.example', 'admin')
        expect(await refusal(inviteMember(dashboard, acme, { email: 'taken@globex.example', role: 'viewer' }))).toEqual(
          {
            wireCode: 'conflict',
            message: 'A member with email taken@globex.example exists already.',
          },
        )
        expect(
          (await refusal(inviteMember(dashboard, acme, { email: 'a@acme.example', role: 'owner' }))).wireCode,
        ).toBe('invalid_request')
        expect((await refusal(inviteMember(dashboard, acme, { email: '<b>@x', role: 'viewer' }))).wireCode).toBe(
          'invalid_request',
        )

        const first = await inviteMember(
          dashboard,
          acme,
          { email: 'twice@acme.example', role: 'viewer' },
          undefined,
          T0,
        )
        const second = await inviteMember(
          dashboard,
          acme,
          { email: 'twice@acme.example', role: 'admin' },
          undefined,
          T0,
        )
        expect(await openInvitation(dashboard, first.token, T0)).toBeNull()
        expect(await openInvitation(dashboard, second.token, T0)).toMatchObject({ role: 'admin' })
        expect(await dashboard.listInvitations('acme', new Date(T0))).toHaveLength(1)

        // Another tenant's admin cannot revoke it: the same answer as an ID that does not exist.
        const theirs = await refusal(revokeInvitation(dashboard, 'globex', second.invitation.invitationId))
        const missing = await refusal(revokeInvitation(dashboard, 'globex', randomUUID()))
        expect(theirs).toEqual(missing)
        expect(await openInvitation(dashboard, second.token, T0)).not.toBeNull()
        await revokeInvitation(dashboard, 'acme', second.invitation.invitationId)
        expect(await openInvitation(dashboard, second.token, T0)).toBeNull()
        expect(await acceptInvitation(dashboard, second.token, PASSWORD, null, T0)).toBeNull()

        // The password rules are the CLI's; a short one uses nothing up.
        const third = await inviteMember(
          dashboard,
          acme,
          { email: 'short@acme.example', role: 'viewer' },
          undefined,
          T0,
        )
        expect(await refusal(acceptInvitation(dashboard, third.token, 'short', null, T0))).toEqual({
          wireCode: 'invalid_request',
          message: 'A password needs at least 12 characters.',
        })
        expect(await openInvitation(dashboard, third.token, T0)).not.toBeNull()
        // The email became a member's meanwhile (the CLI added it): a conflict, and the invitation stays.
        await member(dashboard, 'globex', 'short@acme.example', 'viewer')
        expect((await refusal(acceptInvitation(dashboard, third.token, PASSWORD, null, T0))).wireCode).toBe('conflict')
      } finally {
        await close()
      }
    },
  )

  it.skipIf(skip)(
    'a link whose email became a member’s meanwhile is a conflict at once, hashing no password however often it is sent',
    async () => {
      const { dashboard, close } = await open(name)
      try {
        const { token } = await inviteMember(
          dashboard,
          tenantRecord('acme'),
          { email: 'twice@example.com', role: 'admin' },
          undefined,
          T0,
        )
        await member(dashboard, 'globex', 'twice@example.com', 'viewer')
        const before = hashes.count
        for (let i = 0; i < 3; i++)
          expect(await refusal(acceptInvitation(dashboard, token, PASSWORD, null, T0))).toEqual({
            wireCode: 'conflict',
            message:
              'A member with email twice@example.com exists already: sign in with that account, or ask an admin to invite another address.',
          })
        expect(hashes.count - before).toBe(0)
        expect((await dashboard.findMemberByEmail('twice@example.com'))?.tenantId).toBe('globex')
      } finally {
        await close()
      }
    },
  )

  it.skipIf(skip)(
    'a tenant holds at most 100 pending invitations: the next is a conflict until one is withdrawn or expires',
    async () => {
      const { dashboard, rawInvitations, close } = await open(name)
      try {
        const acme = tenantRecord('acme')
        expect(MAX_PENDING_INVITATIONS).toBe(100)
        const made = []
        for (let i = 0; i < MAX_PENDING_INVITATIONS; i++)
          made.push(await inviteMember(dashboard, acme, { email: `m${i}@acme.example`, role: 'viewer' }, undefined, T0))
        expect(
          await refusal(
            inviteMember(dashboard, acme, { email: 'one-more@acme.example', role: 'viewer' }, undefined, T0),
          ),
        ).toEqual({
          wireCode: 'conflict',
          message:
            'Your tenant has 100 pending invitations, the most it can hold: withdraw one on the Members page, or wait for one to be used or to expire.',
        })
        // A new link for an email already invited replaces its invitation, and another tenant is not affected.
        expect(
          await inviteMember(dashboard, acme, { email: 'm0@acme.example', role: 'admin' }, undefined, T0),
        ).toBeTruthy()
        expect(
          await inviteMember(
            dashboard,
            tenantRecord('globex'),
            { email: 'x@globex.example', role: 'viewer' },
            undefined,
            T0,
          ),
        ).toBeTruthy()
        expect(await rawInvitations()).toHaveLength(MAX_PENDING_INVITATIONS + 1)
        await revokeInvitation(dashboard, 'acme', made[1]!.invitation.invitationId)
        expect(
          await inviteMember(dashboard, acme, { email: 'one-more@acme.example', role: 'viewer' }, undefined, T0),
        ).toBeTruthy()
        // A day later every link has expired: inviting again clears them.
        const later = T0 + INVITATION_TTL_MS
        expect(
          await inviteMember(dashboard, acme, { email: 'later@acme.example', role: 'viewer' }, undefined, later),
        ).toBeTruthy()
        expect(await dashboard.listInvitations('acme', new Date(later))).toHaveLength(1)
      } finally {
        await close()
      }
    },
  )

  it.skipIf(skip)(
    'the last admin can be neither removed nor made a viewer, by the CLI’s path or the dashboard’s',
    async () => {
      const { dashboard, close } = await open(name)
      try {
        const boss = await member(dashboard, 'acme', 'boss@acme.example', 'admin')
        const viewer = await member(dashboard, 'acme', 'viewer@acme.example', 'viewer')
        await member(dashboard, 'globex', 'other@globex.example', 'admin')
        await dashboard.createSession({
          sessionDigest: 'boss-session',
          memberId: boss.memberId,
          csrfToken: 'c',
          createdAt: new Date(T0),
          lastSeenAt: new Date(T0),
        })
        expect(await refusal(removeMember(dashboard, 'boss@acme.example'))).toEqual({
          wireCode: 'conflict',
          message:
            'boss@acme.example is the last admin of the tenant, so they cannot be removed: make another member an admin first.',
        })
        expect(await refusal(changeRole(dashboard, boss, 'viewer'))).toEqual({
          wireCode: 'conflict',
          message:
            'boss@acme.example is the last admin of the tenant, so they cannot be made a viewer: make another member an admin first.',
        })
        expect((await dashboard.findMember(boss.memberId))?.role).toBe('admin')
        expect(await dashboard.findSession('boss-session')).not.toBeNull()
        // Another tenant's member is answered as a missing one.
        expect(await memberOfTenant(dashboard, 'globex', boss.memberId)).toBeNull()
        expect(await memberOfTenant(dashboard, 'acme', boss.memberId)).toMatchObject({ email: 'boss@acme.example' })

        // With a second admin, either may go; a viewer may always go.
        expect((await changeRole(dashboard, viewer, 'admin')).changed).toBe(true)
        expect((await changeRole(dashboard, 'viewer@acme.example', 'admin')).changed).toBe(false)
        await removeMember(dashboard, boss)
        expect(await dashboard.findSession('boss-session')).toBeNull()
        expect((await refusal(removeMember(dashboard, 'viewer@acme.example'))).wireCode).toBe('conflict')
        const actions = (await dashboard.listActivity('acme', 10)).map((e) => [e.action, e.target])
        expect(actions).toEqual([
          ['member.removed', 'boss@acme.example'],
          ['member.role_changed', 'viewer@acme.example: viewer → admin'],
        ])
      } finally {
        await close()
      }
    },
  )

  it.skipIf(skip)('two admins demoting or removing each other at once leave exactly one admin', async () => {
    const { dashboard, addTenant, close } = await open(name)
    try {
      for (let round = 0; round < 5; round++) {
        const tenantId = await addTenant()
        const a = await member(dashboard, tenantId, `a${round}@example.com`, 'admin')
        const b = await member(dashboard, tenantId, `b${round}@example.com`, 'admin')
        const outcomes = await Promise.all(
          round < 3
            ? [dashboard.setRole(a.memberId, 'viewer'), dashboard.setRole(b.memberId, 'viewer')]
            : [dashboard.removeMember(a.memberId), dashboard.setRole(b.memberId, 'viewer')],
        )
        expect(outcomes.sort()).toEqual(['done', 'last_admin'])
        const admins = (await dashboard.listMembers(tenantId)).filter((m) => m.role === 'admin')
        expect(admins).toHaveLength(1)
      }
    } finally {
      await close()
    }
  })
})

describe('removals and role changes against a model', () => {
  it('keep a tenant’s admin whatever the order, and change what the model changes', async () => {
    const { dashboard, addTenant, close } = await open('SQLite')
    try {
      type Op = { kind: 'remove' | 'admin' | 'viewer'; who: number }
      const op = fc.record({ kind: fc.constantFrom('remove', 'admin', 'viewer'), who: fc.integer({ min: 0, max: 3 }) })
      let run = 0
      await fc.assert(
        fc.asyncProperty(fc.array(op, { maxLength: 12 }), async (ops: Op[]) => {
          const tenantId = await addTenant()
          run++
          const roles: Role[] = ['admin', 'viewer', 'admin', 'viewer']
          const ids: string[] = []
          for (const [i, role] of roles.entries())
            ids.push((await member(dashboard, tenantId, `m${i}-${run}@example.com`, role)).memberId)
          // The model: who is there, with what role.
          const model = new Map<string, Role>(ids.map((id, i) => [id, roles[i]!]))
          for (const { kind, who } of ops) {
            const id = ids[who]!
            const before = model.get(id)
            const admins = [...model.values()].filter((r) => r === 'admin').length
            const outcome = kind === 'remove' ? await dashboard.removeMember(id) : await dashboard.setRole(id, kind)
            if (before === undefined) expect(outcome).toBe('not_found')
            else if (before === 'admin' && kind !== 'admin' && admins === 1) expect(outcome).toBe('last_admin')
            else {
              expect(outcome).toBe('done')
              if (kind === 'remove') model.delete(id)
              else model.set(id, kind)
            }
          }
          const stored = new Map((await dashboard.listMembers(tenantId)).map((m) => [m.memberId, m.role]))
          expect(stored).toEqual(model)
          expect([...stored.values()]).toContain('admin')
        }),
        { numRuns: 60 },
      )
    } finally {
      await close()
    }
  })
})
