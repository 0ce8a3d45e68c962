import { toDate, type PostgresTables, type SqliteDatabase, type Time } from './database.js'

export interface SessionRecord {
  /** SHA-256 of the cookie's session ID: the ID itself is never stored. */
  readonly sessionDigest: string
  readonly memberId: string
  readonly csrfToken: string
  readonly createdAt: Date
  readonly lastSeenAt: Date
  /** A notice for the next page this session opens ("Key abc revoked."), shown once. */
  readonly flash?: string | null
  /**
   * `full`: signed in. `code`: the password was right and the sign-in waits for a one-time code. `enrol`: the
   * password was right and the tenant requires two-factor, which the member must set up first. Default `full`.
   */
  readonly stage?: SessionStage
  /** The last password (and code) check of this session, on the dashboard's clock: re-authentication's age. */
  readonly verifiedAt?: Date | null
  /** The browser's User-Agent at sign-in, cut to 300 characters. */
  readonly userAgent?: string | null
  /** The address the session signed in from. */
  readonly ip?: string | null
  /** A TOTP secret offered for enrolment and not yet confirmed, encrypted. */
  readonly enrolSecret?: string | null
}

export type SessionStage = 'full' | 'code' | 'enrol'

/** Create-key forms a session may have open at once, each good for one key; the oldest is forgotten first. */
export const MAX_FORM_NONCES = 10

export interface SessionStore {
  createSession(session: SessionRecord): Promise<void>
  findSession(sessionDigest: string): Promise<SessionRecord | null>
  touchSession(sessionDigest: string, lastSeenAt: Date): Promise<void>
  deleteSession(sessionDigest: string): Promise<void>
  /** Deletes sessions idle since `idleBefore` or created before `createdBefore`. */
  deleteExpiredSessions(idleBefore: Date, createdBefore: Date): Promise<number>
  /** Adds a one-time form nonce to the session's, keeping the newest `MAX_FORM_NONCES`. */
  addFormNonce(sessionDigest: string, nonce: string): Promise<void>
  /** Removes `nonce` from the session's; true only for the one caller that did. */
  takeFormNonce(sessionDigest: string, nonce: string): Promise<boolean>
  /** Sets the notice the session's next page shows. */
  setFlash(sessionDigest: string, message: string): Promise<void>
  /** Clears the notice if it is still `message`; true only for the one caller that did. */
  takeFlash(sessionDigest: string, message: string): Promise<boolean>
  /** The member's sessions, signed in or waiting for a second step, newest first. */
  listMemberSessions(memberId: string): Promise<SessionRecord[]>
  /** Ends one session, only if it is the member's; true when it was. */
  deleteMemberSession(memberId: string, sessionDigest: string): Promise<boolean>
  /** Records a password (and code) check just made in this session. */
  setVerifiedAt(sessionDigest: string, verifiedAt: Date): Promise<void>
  /** Keeps (or, with null, forgets) the secret offered for enrolment in this session. */
  setEnrolSecret(sessionDigest: string, enrolSecret: string | null): Promise<void>
}

interface SessionRow {
  session_digest: string
  member_id: string
  csrf_token: string
  created_at: Time
  last_seen_at: Time
  flash?: string | null
  stage?: SessionStage | null
  verified_at?: Time | null
  user_agent?: string | null
  ip?: string | null
  enrol_secret?: string | null
}

const sessionFromRow = (row: SessionRow): SessionRecord => ({
  sessionDigest: row.session_digest,
  memberId: row.member_id,
  csrfToken: row.csrf_token,
  createdAt: toDate(row.created_at),
  lastSeenAt: toDate(row.last_seen_at),
  flash: row.flash ?? null,
  stage: row.stage ?? 'full',
  verifiedAt: row.verified_at == null ? null : toDate(row.verified_at),
  userAgent: row.user_agent ?? null,
  ip: row.ip ?? null,
  enrolSecret: row.enrol_secret ?? null,
})

const nonceList = (stored: string | null | undefined): string[] =>
  stored == null || stored === '' ? [] : stored.split(' ')

export function sqliteSessions(db: SqliteDatabase): SessionStore {
  const q = {
    createSession: db.prepare(
      'INSERT INTO saiku_sessions (session_digest, member_id, csrf_token, created_at, last_seen_at, stage, verified_at, user_agent, ip) VALUES (@session_digest, @member_id, @csrf_token, @created_at, @last_seen_at, @stage, @verified_at, @user_agent, @ip)',
    ),
    listMemberSessions: db.prepare<[string], SessionRow>(
      'SELECT * FROM saiku_sessions WHERE member_id = ? ORDER BY created_at DESC, session_digest',
    ),
    deleteMemberSession: db.prepare<[string, string]>(
      'DELETE FROM saiku_sessions WHERE member_id = ? AND session_digest = ?',
    ),
    setVerifiedAt: db.prepare<[number, string]>('UPDATE saiku_sessions SET verified_at = ? WHERE session_digest = ?'),
    setEnrolSecret: db.prepare<[string | null, string]>(
      'UPDATE saiku_sessions SET enrol_secret = ? WHERE session_digest = ?',
    ),
    findSession: db.prepare<[string], SessionRow>('SELECT * FROM saiku_sessions WHERE session_digest = ?'),
    touchSession: db.prepare<[number, string]>('UPDATE saiku_sessions SET last_seen_at = ? WHERE session_digest = ?'),
    deleteSession: db.prepare<[string]>('DELETE FROM saiku_sessions WHERE session_digest = ?'),
    deleteExpired: db.prepare<[number, number]>('DELETE FROM saiku_sessions WHERE last_seen_at < ? OR created_at < ?'),
    readFormNonces: db.prepare<[string], { form_nonce: string | null }>(
      'SELECT form_nonce FROM saiku_sessions WHERE session_digest = ?',
    ),
    writeFormNonces: db.prepare<[string | null, string]>(
      'UPDATE saiku_sessions SET form_nonce = ? WHERE session_digest = ?',
    ),
    setFlash: db.prepare<[string, string]>('UPDATE saiku_sessions SET flash = ? WHERE session_digest = ?'),
    takeFlash: db.prepare<[string, string]>(
      'UPDATE saiku_sessions SET flash = NULL WHERE session_digest = ? AND flash = ?',
    ),
  }

  return {
    async createSession(s) {
      q.createSession.run({
        session_digest: s.sessionDigest,
        member_id: s.memberId,
        csrf_token: s.csrfToken,
        created_at: s.createdAt.getTime(),
        last_seen_at: s.lastSeenAt.getTime(),
        stage: s.stage ?? 'full',
        verified_at: s.verifiedAt?.getTime() ?? null,
        user_agent: s.userAgent ?? null,
        ip: s.ip ?? null,
      })
    },
    async findSession(sessionDigest) {
      const row = q.findSession.get(sessionDigest)
      return row === undefined ? null : sessionFromRow(row)
    },
    async touchSession(sessionDigest, lastSeenAt) {
      q.touchSession.run(lastSeenAt.getTime(), sessionDigest)
    },
    async deleteSession(sessionDigest) {
      q.deleteSession.run(sessionDigest)
    },
    async deleteExpiredSessions(idleBefore, createdBefore) {
      return q.deleteExpired.run(idleBefore.getTime(), createdBefore.getTime()).changes
    },
    async addFormNonce(sessionDigest, nonce) {
      db.transaction(() => {
        const kept = nonceList(q.readFormNonces.get(sessionDigest)?.form_nonce)
        q.writeFormNonces.run([nonce, ...kept].slice(0, MAX_FORM_NONCES).join(' '), sessionDigest)
      }).immediate()
    },
    async takeFormNonce(sessionDigest, nonce) {
      return db
        .transaction(() => {
          const kept = nonceList(q.readFormNonces.get(sessionDigest)?.form_nonce)
          if (!kept.includes(nonce)) return false
          const rest = kept.filter((n) => n !== nonce)
          q.writeFormNonces.run(rest.length === 0 ? null : rest.join(' '), sessionDigest)
          return true
        })
        .immediate()
    },
    async setFlash(sessionDigest, message) {
      q.setFlash.run(message, sessionDigest)
    },
    async takeFlash(sessionDigest, message) {
      return q.takeFlash.run(sessionDigest, message).changes > 0
    },
    async listMemberSessions(memberId) {
      return q.listMemberSessions.all(memberId).map(sessionFromRow)
    },
    async deleteMemberSession(memberId, sessionDigest) {
      return q.deleteMemberSession.run(memberId, sessionDigest).changes > 0
    },
    async setVerifiedAt(sessionDigest, verifiedAt) {
      q.setVerifiedAt.run(verifiedAt.getTime(), sessionDigest)
    },
    async setEnrolSecret(sessionDigest, enrolSecret) {
      q.setEnrolSecret.run(enrolSecret, sessionDigest)
    },
  }
}

export function postgresSessions({ tables: t, query }: PostgresTables): SessionStore {
  return {
    async createSession(x) {
      await query(
        `INSERT INTO ${t.sessions} (session_digest, member_id, csrf_token, created_at, last_seen_at, stage, verified_at, user_agent, ip)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [
          x.sessionDigest,
          x.memberId,
          x.csrfToken,
          x.createdAt,
          x.lastSeenAt,
          x.stage ?? 'full',
          x.verifiedAt ?? null,
          x.userAgent ?? null,
          x.ip ?? null,
        ],
      )
    },
    async findSession(sessionDigest) {
      const { rows } = await query<SessionRow>(`SELECT * FROM ${t.sessions} WHERE session_digest = $1`, [sessionDigest])
      return rows[0] === undefined ? null : sessionFromRow(rows[0])
    },
    async touchSession(sessionDigest, lastSeenAt) {
      await query(`UPDATE ${t.sessions} SET last_seen_at = $2 WHERE session_digest = $1`, [sessionDigest, lastSeenAt])
    },
    async deleteSession(sessionDigest) {
      await query(`DELETE FROM ${t.sessions} WHERE session_digest = $1`, [sessionDigest])
    },
    async deleteExpiredSessions(idleBefore, createdBefore) {
      return (
        (
          await query(`DELETE FROM ${t.sessions} WHERE last_seen_at < $1 OR created_at < $2`, [
            idleBefore,
            createdBefore,
          ])
        ).rowCount ?? 0
      )
    },
    async addFormNonce(sessionDigest, nonce) {
      await query(
        `UPDATE ${t.sessions}
            SET form_nonce = array_to_string((ARRAY[$2::text] || coalesce(string_to_array(form_nonce, ' '), '{}'))[1:$3], ' ')
          WHERE session_digest = $1`,
        [sessionDigest, nonce, MAX_FORM_NONCES],
      )
    },
    async takeFormNonce(sessionDigest, nonce) {
      // The row lock serialises two takes of one nonce; the second sees it gone and changes nothing.
      const result = await query(
        `UPDATE ${t.sessions}
            SET form_nonce = nullif(array_to_string(array_remove(string_to_array(form_nonce, ' '), $2::text), ' '), '')
          WHERE session_digest = $1 AND $2::text = ANY (string_to_array(form_nonce, ' '))`,
        [sessionDigest, nonce],
      )
      return (result.rowCount ?? 0) > 0
    },
    async setFlash(sessionDigest, message) {
      await query(`UPDATE ${t.sessions} SET flash = $2 WHERE session_digest = $1`, [sessionDigest, message])
    },
    async takeFlash(sessionDigest, message) {
      const result = await query(`UPDATE ${t.sessions} SET flash = NULL WHERE session_digest = $1 AND flash = $2`, [
        sessionDigest,
        message,
      ])
      return (result.rowCount ?? 0) > 0
    },
    async listMemberSessions(memberId) {
      const { rows } = await query<SessionRow>(
        `SELECT * FROM ${t.sessions} WHERE member_id = $1 ORDER BY created_at DESC, session_digest`,
        [memberId],
      )
      return rows.map(sessionFromRow)
    },
    async deleteMemberSession(memberId, sessionDigest) {
      const result = await query(`DELETE FROM ${t.sessions} WHERE member_id = $1 AND session_digest = $2`, [
        memberId,
        sessionDigest,
      ])
      return (result.rowCount ?? 0) > 0
    },
    async setVerifiedAt(sessionDigest, verifiedAt) {
      await query(`UPDATE ${t.sessions} SET verified_at = $2 WHERE session_digest = $1`, [sessionDigest, verifiedAt])
    },
    async setEnrolSecret(sessionDigest, enrolSecret) {
      await query(`UPDATE ${t.sessions} SET enrol_secret = $2 WHERE session_digest = $1`, [sessionDigest, enrolSecret])
    },
  }
}
