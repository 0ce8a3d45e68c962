import { toDate, type PostgresTables, type SqliteDatabase, type Time } from './database.js'

export type Role = 'admin' | 'viewer'
export const ROLES: readonly Role[] = ['admin', 'viewer']

export interface Member {
  readonly memberId: string
  readonly tenantId: string
  /** Lower-case; unique across tenants, so an email names one member. */
  readonly email: string
  readonly role: Role
  /** `scrypt$…` (see shared/passwords.ts); never the password. */
  readonly passwordHash: string
  readonly createdAt: Date
  /** The TOTP secret, encrypted with the dashboard key (see shared/two-factor.ts); null until enrolled. */
  readonly totpSecret?: string | null
}

/**
 * What a removal or a role change did. `last_admin`: refused, because the tenant would be left without an
 * admin; decided in the same transaction as the change, so two admins demoting each other at once leave one.
 */
export type MemberChange = 'done' | 'not_found' | 'last_admin'

export interface MemberStore {
  addMember(member: Member): Promise<void>
  findMember(memberId: string): Promise<Member | null>
  findMemberByEmail(email: string): Promise<Member | null>
  listMembers(tenantId: string): Promise<Member[]>
  /** Removes the member and every session of theirs, unless they are their tenant's last admin. */
  removeMember(memberId: string): Promise<MemberChange>
  /** Sets the member's role, unless that demotes their tenant's last admin. Their open sessions have it at once. */
  setRole(memberId: string, role: Role): Promise<MemberChange>
  /** Sets a new password hash and ends every session of the member. */
  setPasswordHash(memberId: string, passwordHash: string): Promise<boolean>
  /** Sets a new password hash and ends every session of the member but `keepSessionDigest`, in one transaction. */
  changePassword(memberId: string, passwordHash: string, keepSessionDigest: string): Promise<boolean>
}

interface MemberRow {
  member_id: string
  tenant_id: string
  email: string
  role: Role
  password_hash: string
  created_at: Time
  totp_secret?: string | null
}

const memberFromRow = (row: MemberRow): Member => ({
  memberId: row.member_id,
  tenantId: row.tenant_id,
  email: row.email,
  role: row.role,
  passwordHash: row.password_hash,
  createdAt: toDate(row.created_at),
  totpSecret: row.totp_secret ?? null,
})

// Removing a member or setting their password ends their sessions in the same transaction. A removal or a
// role change that would leave a tenant without an admin is refused inside the transaction that makes it.

/** Whether taking `member` out of the admins (by removal, or by `role`) leaves the tenant none. */
const losesLastAdmin = (member: { role: Role }, admins: number, role: Role | null): boolean =>
  member.role === 'admin' && role !== 'admin' && admins <= 1

export function sqliteMembers(db: SqliteDatabase): MemberStore {
  const q = {
    addMember: db.prepare(
      'INSERT INTO saiku_members (member_id, tenant_id, email, role, password_hash, created_at) VALUES (@member_id, @tenant_id, @email, @role, @password_hash, @created_at)',
    ),
    findMember: db.prepare<[string], MemberRow>('SELECT * FROM saiku_members WHERE member_id = ?'),
    findMemberByEmail: db.prepare<[string], MemberRow>('SELECT * FROM saiku_members WHERE email = ?'),
    listMembers: db.prepare<[string], MemberRow>('SELECT * FROM saiku_members WHERE tenant_id = ? ORDER BY email'),
    deleteMemberSessions: db.prepare<[string]>('DELETE FROM saiku_sessions WHERE member_id = ?'),
    removeMember: db.prepare<[string]>('DELETE FROM saiku_members WHERE member_id = ?'),
    countAdmins: db.prepare<[string], { admins: number }>(
      "SELECT count(*) AS admins FROM saiku_members WHERE tenant_id = ? AND role = 'admin'",
    ),
    setRole: db.prepare<[Role, string]>('UPDATE saiku_members SET role = ? WHERE member_id = ?'),
    setPasswordHash: db.prepare<[string, string]>('UPDATE saiku_members SET password_hash = ? WHERE member_id = ?'),
    deleteOtherSessions: db.prepare<[string, string]>(
      'DELETE FROM saiku_sessions WHERE member_id = ? AND session_digest <> ?',
    ),
  }

  /** Checks and applies one change in an immediate transaction: a writer in another process waits for it. */
  const change = (memberId: string, role: Role | null, apply: () => void): MemberChange =>
    db
      .transaction((): MemberChange => {
        const row = q.findMember.get(memberId)
        if (row === undefined) return 'not_found'
        if (losesLastAdmin(row, q.countAdmins.get(row.tenant_id)!.admins, role)) return 'last_admin'
        apply()
        return 'done'
      })
      .immediate()

  return {
    async addMember(m) {
      q.addMember.run({
        member_id: m.memberId,
        tenant_id: m.tenantId,
        email: m.email,
        role: m.role,
        password_hash: m.passwordHash,
        created_at: m.createdAt.getTime(),
      })
    },
    async findMember(memberId) {
      const row = q.findMember.get(memberId)
      return row === undefined ? null : memberFromRow(row)
    },
    async findMemberByEmail(email) {
      const row = q.findMemberByEmail.get(email)
      return row === undefined ? null : memberFromRow(row)
    },
    async listMembers(tenantId) {
      return q.listMembers.all(tenantId).map(memberFromRow)
    },
    async removeMember(memberId) {
      return change(memberId, null, () => {
        q.deleteMemberSessions.run(memberId)
        q.removeMember.run(memberId)
      })
    },
    async setRole(memberId, role) {
      return change(memberId, role, () => q.setRole.run(role, memberId))
    },
    async setPasswordHash(memberId, passwordHash) {
      return db.transaction(() => {
        q.deleteMemberSessions.run(memberId)
        return q.setPasswordHash.run(passwordHash, memberId).changes > 0
      })()
    },
    async changePassword(memberId, passwordHash, keepSessionDigest) {
      return db.transaction(() => {
        q.deleteOtherSessions.run(memberId, keepSessionDigest)
        return q.setPasswordHash.run(passwordHash, memberId).changes > 0
      })()
    },
  }
}

export function postgresMembers({ tables: t, query, inTransaction }: PostgresTables): MemberStore {
  type Run = Parameters<Parameters<typeof inTransaction>[0]>[0]
  /**
   * Locks the tenant's admins (in one order, so two changes cannot deadlock) and then the member, counts, and
   * applies the change. A change that waited for a lock sees the rows as the other one left them.
   */
  const change = (memberId: string, role: Role | null, apply: (run: Run) => Promise<void>): Promise<MemberChange> =>
    inTransaction(async (run) => {
      // A member's tenant never changes: read without a lock.
      const found = await run<{ tenant_id: string }>(`SELECT tenant_id FROM ${t.members} WHERE member_id = $1`, [
        memberId,
      ])
      if (found.rows[0] === undefined) return 'not_found'
      const admins = await run(
        `SELECT member_id FROM ${t.members} WHERE tenant_id = $1 AND role = 'admin' ORDER BY member_id FOR UPDATE`,
        [found.rows[0].tenant_id],
      )
      const locked = await run<{ role: Role }>(`SELECT role FROM ${t.members} WHERE member_id = $1 FOR UPDATE`, [
        memberId,
      ])
      if (locked.rows[0] === undefined) return 'not_found'
      if (losesLastAdmin(locked.rows[0], admins.rows.length, role)) return 'last_admin'
      await apply(run)
      return 'done'
    })

  return {
    async addMember(m) {
      await query(
        `INSERT INTO ${t.members} (member_id, tenant_id, email, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
        [m.memberId, m.tenantId, m.email, m.role, m.passwordHash, m.createdAt],
      )
    },
    async findMember(memberId) {
      const { rows } = await query<MemberRow>(`SELECT * FROM ${t.members} WHERE member_id = $1`, [memberId])
      return rows[0] === undefined ? null : memberFromRow(rows[0])
    },
    async findMemberByEmail(email) {
      const { rows } = await query<MemberRow>(`SELECT * FROM ${t.members} WHERE email = $1`, [email])
      return rows[0] === undefined ? null : memberFromRow(rows[0])
    },
    async listMembers(tenantId) {
      const { rows } = await query<MemberRow>(`SELECT * FROM ${t.members} WHERE tenant_id = $1 ORDER BY email`, [
        tenantId,
      ])
      return rows.map(memberFromRow)
    },
    removeMember: (memberId) =>
      change(memberId, null, async (run) => {
        await run(`DELETE FROM ${t.sessions} WHERE member_id = $1`, [memberId])
        await run(`DELETE FROM ${t.members} WHERE member_id = $1`, [memberId])
      }),
    setRole: (memberId, role) =>
      change(memberId, role, async (run) => {
        await run(`UPDATE ${t.members} SET role = $2 WHERE member_id = $1`, [memberId, role])
      }),
    setPasswordHash: (memberId, passwordHash) =>
      inTransaction(async (run) => {
        await run(`DELETE FROM ${t.sessions} WHERE member_id = $1`, [memberId])
        return (
          ((await run(`UPDATE ${t.members} SET password_hash = $2 WHERE member_id = $1`, [memberId, passwordHash]))
            .rowCount ?? 0) > 0
        )
      }),
    changePassword: (memberId, passwordHash, keepSessionDigest) =>
      inTransaction(async (run) => {
        await run(`DELETE FROM ${t.sessions} WHERE member_id = $1 AND session_digest <> $2`, [
          memberId,
          keepSessionDigest,
        ])
        return (
          ((await run(`UPDATE ${t.members} SET password_hash = $2 WHERE member_id = $1`, [memberId, passwordHash]))
            .rowCount ?? 0) > 0
        )
      }),
  }
}
