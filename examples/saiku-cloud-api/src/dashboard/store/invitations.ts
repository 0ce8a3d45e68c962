import { toDate, type PostgresTables, type SqliteDatabase, type Time } from './database.js'
import type { Member, Role } from './members.js'

/** A pending invitation to join a tenant, with its role. */
export interface Invitation {
  /** Names the invitation in pages and forms; never the token. */
  readonly invitationId: string
  readonly tenantId: string
  /** Lower-case, as a member's. */
  readonly email: string
  readonly role: Role
  /** Who invited: a member's email, or "cli". */
  readonly invitedBy: string
  readonly createdAt: Date
  readonly expiresAt: Date
}

/** What accepting an invitation makes of the invitee: their member row, less what the invitation gives. */
export interface NewMember {
  readonly memberId: string
  readonly passwordHash: string
  readonly createdAt: Date
}

export interface InvitationStore {
  /**
   * Stores an invitation by the SHA-256 of its token (the token itself is never stored). It replaces a
   * pending one for the same tenant and email, whose link stops working; expired ones of the tenant go.
   * False, and nothing stored, when the tenant holds `maxPending` pending invitations for other emails
   * (counted in the same transaction, so two at once cannot pass the bound together).
   */
  addInvitation(invitation: Invitation, tokenDigest: string, maxPending: number): Promise<boolean>
  /** The invitation of a token digest, while it is pending at `now`. */
  findInvitation(tokenDigest: string, now: Date): Promise<Invitation | null>
  /** The tenant's invitations pending at `now`, newest first. */
  listInvitations(tenantId: string, now: Date): Promise<Invitation[]>
  /** Deletes one of the tenant's invitations; null when it has none by that ID. */
  revokeInvitation(tenantId: string, invitationId: string): Promise<Invitation | null>
  /**
   * Uses the invitation once: deletes it and adds its member in one transaction. Null when it is used,
   * revoked or expired at `now`; of several at once, exactly one gets the member. Throws the database's
   * unique violation when a member has the email already, and the invitation stays.
   */
  acceptInvitation(tokenDigest: string, now: Date, member: NewMember): Promise<Member | null>
}

interface InvitationRow {
  invitation_id: string
  tenant_id: string
  email: string
  role: Role
  invited_by: string
  created_at: Time
  expires_at: Time
}

const invitationFromRow = (row: InvitationRow): Invitation => ({
  invitationId: row.invitation_id,
  tenantId: row.tenant_id,
  email: row.email,
  role: row.role,
  invitedBy: row.invited_by,
  createdAt: toDate(row.created_at),
  expiresAt: toDate(row.expires_at),
})

const memberOf = (invitation: Invitation, member: NewMember): Member => ({
  memberId: member.memberId,
  tenantId: invitation.tenantId,
  email: invitation.email,
  role: invitation.role,
  passwordHash: member.passwordHash,
  createdAt: member.createdAt,
})

export function sqliteInvitations(db: SqliteDatabase): InvitationStore {
  const q = {
    deleteExpired: db.prepare<[string, number]>(
      'DELETE FROM saiku_invitations WHERE tenant_id = ? AND expires_at <= ?',
    ),
    countOthers: db.prepare<[string, string], { pending: number }>(
      'SELECT count(*) AS pending FROM saiku_invitations WHERE tenant_id = ? AND email <> ?',
    ),
    upsert: db.prepare(
      `INSERT INTO saiku_invitations (invitation_id, token_digest, tenant_id, email, role, invited_by, created_at, expires_at)
       VALUES (@invitation_id, @token_digest, @tenant_id, @email, @role, @invited_by, @created_at, @expires_at)
       ON CONFLICT (tenant_id, email) DO UPDATE SET
         invitation_id = excluded.invitation_id, token_digest = excluded.token_digest, role = excluded.role,
         invited_by = excluded.invited_by, created_at = excluded.created_at, expires_at = excluded.expires_at`,
    ),
    find: db.prepare<[string, number], InvitationRow>(
      'SELECT * FROM saiku_invitations WHERE token_digest = ? AND expires_at > ?',
    ),
    list: db.prepare<[string, number], InvitationRow>(
      'SELECT * FROM saiku_invitations WHERE tenant_id = ? AND expires_at > ? ORDER BY created_at DESC, email',
    ),
    byId: db.prepare<[string, string], InvitationRow>(
      'SELECT * FROM saiku_invitations WHERE tenant_id = ? AND invitation_id = ?',
    ),
    deleteById: db.prepare<[string]>('DELETE FROM saiku_invitations WHERE invitation_id = ?'),
    deleteByDigest: db.prepare<[string]>('DELETE FROM saiku_invitations WHERE token_digest = ?'),
    addMember: db.prepare(
      'INSERT INTO saiku_members (member_id, tenant_id, email, role, password_hash, created_at) VALUES (@member_id, @tenant_id, @email, @role, @password_hash, @created_at)',
    ),
  }

  return {
    async addInvitation(i, tokenDigest, maxPending) {
      return db
        .transaction(() => {
          q.deleteExpired.run(i.tenantId, i.createdAt.getTime())
          if (q.countOthers.get(i.tenantId, i.email)!.pending >= maxPending) return false
          q.upsert.run({
            invitation_id: i.invitationId,
            token_digest: tokenDigest,
            tenant_id: i.tenantId,
            email: i.email,
            role: i.role,
            invited_by: i.invitedBy,
            created_at: i.createdAt.getTime(),
            expires_at: i.expiresAt.getTime(),
          })
          return true
        })
        .immediate()
    },
    async findInvitation(tokenDigest, now) {
      const row = q.find.get(tokenDigest, now.getTime())
      return row === undefined ? null : invitationFromRow(row)
    },
    async listInvitations(tenantId, now) {
      return q.list.all(tenantId, now.getTime()).map(invitationFromRow)
    },
    async revokeInvitation(tenantId, invitationId) {
      return db
        .transaction(() => {
          const row = q.byId.get(tenantId, invitationId)
          if (row === undefined) return null
          q.deleteById.run(invitationId)
          return invitationFromRow(row)
        })
        .immediate()
    },
    async acceptInvitation(tokenDigest, now, member) {
      return db
        .transaction(() => {
          const row = q.find.get(tokenDigest, now.getTime())
          if (row === undefined) return null
          q.deleteByDigest.run(tokenDigest)
          const added = memberOf(invitationFromRow(row), member)
          q.addMember.run({
            member_id: added.memberId,
            tenant_id: added.tenantId,
            email: added.email,
            role: added.role,
            password_hash: added.passwordHash,
            created_at: added.createdAt.getTime(),
          })
          return added
        })
        .immediate()
    },
  }
}

export function postgresInvitations({ tables: t, query, inTransaction }: PostgresTables): InvitationStore {
  return {
    addInvitation: (i, tokenDigest, maxPending) =>
      inTransaction(async (run) => {
        // One tenant's invitations are added one at a time, so the count below holds until the insert.
        await run(`SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))`, [t.invitations, i.tenantId])
        await run(`DELETE FROM ${t.invitations} WHERE tenant_id = $1 AND expires_at <= $2`, [i.tenantId, i.createdAt])
        const others = await run<{ pending: number }>(
          `SELECT count(*)::int AS pending FROM ${t.invitations} WHERE tenant_id = $1 AND email <> $2`,
          [i.tenantId, i.email],
        )
        if (others.rows[0]!.pending >= maxPending) return false
        await run(
          `INSERT INTO ${t.invitations} (invitation_id, token_digest, tenant_id, email, role, invited_by, created_at, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (tenant_id, email) DO UPDATE SET
             invitation_id = excluded.invitation_id, token_digest = excluded.token_digest, role = excluded.role,
             invited_by = excluded.invited_by, created_at = excluded.created_at, expires_at = excluded.expires_at`,
          [i.invitationId, tokenDigest, i.tenantId, i.email, i.role, i.invitedBy, i.createdAt, i.expiresAt],
        )
        return true
      }),
    async findInvitation(tokenDigest, now) {
      const { rows } = await query<InvitationRow>(
        `SELECT * FROM ${t.invitations} WHERE token_digest = $1 AND expires_at > $2`,
        [tokenDigest, now],
      )
      return rows[0] === undefined ? null : invitationFromRow(rows[0])
    },
    async listInvitations(tenantId, now) {
      const { rows } = await query<InvitationRow>(
        `SELECT * FROM ${t.invitations} WHERE tenant_id = $1 AND expires_at > $2 ORDER BY created_at DESC, email`,
        [tenantId, now],
      )
      return rows.map(invitationFromRow)
    },
    async revokeInvitation(tenantId, invitationId) {
      const { rows } = await query<InvitationRow>(
        `DELETE FROM ${t.invitations} WHERE tenant_id = $1 AND invitation_id = $2 RETURNING *`,
        [tenantId, invitationId],
      )
      return rows[0] === undefined ? null : invitationFromRow(rows[0])
    },
    acceptInvitation: (tokenDigest, now, member) =>
      inTransaction(async (run) => {
        // The row lock makes a second use wait, then find the row gone.
        const { rows } = await run<InvitationRow>(
          `DELETE FROM ${t.invitations} WHERE token_digest = $1 AND expires_at > $2 RETURNING *`,
          [tokenDigest, now],
        )
        if (rows[0] === undefined) return null
        const added = memberOf(invitationFromRow(rows[0]), member)
        await run(
          `INSERT INTO ${t.members} (member_id, tenant_id, email, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
          [added.memberId, added.tenantId, added.email, added.role, added.passwordHash, added.createdAt],
        )
        return added
      }),
  }
}
