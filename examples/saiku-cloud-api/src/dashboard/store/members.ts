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

export interface MemberStore {
  addMember(member: Member): Promise<void>
  findMember(memberId: string): Promise<Member | null>
  findMemberByEmail(email: string): Promise<Member | null>
  listMembers(tenantId: string): Promise<Member[]>
  /** Removes the member and every session of theirs; false when there was none. */
  removeMember(memberId: string): Promise<boolean>
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

// Removing a member or setting their password ends their sessions in the same transaction.

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
    setPasswordHash: db.prepare<[string, string]>('UPDATE saiku_members SET password_hash = ? WHERE member_id = ?'),
    deleteOtherSessions: db.prepare<[string, string]>(
      'DELETE FROM saiku_sessions WHERE member_id = ? AND session_digest <> ?',
    ),
  }

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
      return db.transaction(() => {
        q.deleteMemberSessions.run(memberId)
        return q.removeMember.run(memberId).changes > 0
      })()
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
      inTransaction(async (run) => {
        await run(`DELETE FROM ${t.sessions} WHERE member_id = $1`, [memberId])
        return ((await run(`DELETE FROM ${t.members} WHERE member_id = $1`, [memberId])).rowCount ?? 0) > 0
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
