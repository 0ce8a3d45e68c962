import type { TenantAdminStore } from '@saiku/core'
import { PostgresKeyStore } from '@saiku/postgres'
import { SqliteKeyStore } from '@saiku/sqlite'

// The dashboard's tables (members, sessions, the activity log) live in the same
// database as the keys, beside them, with their own schema version.

export type Role = 'admin' | 'viewer'
export const ROLES: readonly Role[] = ['admin', 'viewer']

export interface Member {
  readonly memberId: string
  readonly tenantId: string
  /** Lower-case; unique across tenants, so an email names one member. */
  readonly email: string
  readonly role: Role
  /** `scrypt$…` (see passwords.ts); never the password. */
  readonly passwordHash: string
  readonly createdAt: Date
}

export interface SessionRecord {
  /** SHA-256 of the cookie's session ID: the ID itself is never stored. */
  readonly sessionDigest: string
  readonly memberId: string
  readonly csrfToken: string
  readonly createdAt: Date
  readonly lastSeenAt: Date
  /** A notice for the next page this session opens ("Key abc revoked."), shown once. */
  readonly flash?: string | null
}

/** Create-key forms a session may have open at once, each good for one key; the oldest is forgotten first. */
export const MAX_FORM_NONCES = 10

export type ActorType = 'member' | 'api_key' | 'cli'

export interface ActivityInput {
  readonly tenantId: string
  readonly actorType: ActorType
  /** A member's email, an API key ID, or "cli". */
  readonly actor: string
  /** key.created, key.revoked, trial.started, sign_in, sign_in.refused, sign_in.throttled, member.added, member.removed, member.password_reset */
  readonly action: string
  readonly target?: string | null
  readonly ip?: string | null
  readonly at?: Date
}

export interface ActivityEvent {
  readonly id: number
  readonly tenantId: string
  readonly at: Date
  readonly actorType: ActorType
  readonly actor: string
  readonly action: string
  readonly target: string | null
  readonly ip: string | null
}

export interface DashboardStore {
  addMember(member: Member): Promise<void>
  findMember(memberId: string): Promise<Member | null>
  findMemberByEmail(email: string): Promise<Member | null>
  listMembers(tenantId: string): Promise<Member[]>
  /** Removes the member and every session of theirs; false when there was none. */
  removeMember(memberId: string): Promise<boolean>
  /** Sets a new password hash and ends every session of the member. */
  setPasswordHash(memberId: string, passwordHash: string): Promise<boolean>
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
  recordActivity(event: ActivityInput): Promise<void>
  listActivity(tenantId: string, limit: number): Promise<ActivityEvent[]>
}

type Time = Date | number | string

const toDate = (value: Time): Date =>
  value instanceof Date ? value : new Date(typeof value === 'string' ? Number(value) : value)

interface MemberRow {
  member_id: string
  tenant_id: string
  email: string
  role: Role
  password_hash: string
  created_at: Time
}
interface SessionRow {
  session_digest: string
  member_id: string
  csrf_token: string
  created_at: Time
  last_seen_at: Time
  flash?: string | null
}
interface ActivityRow {
  id: number | string
  tenant_id: string
  at: Time
  actor_type: ActorType
  actor: string
  action: string
  target: string | null
  ip: string | null
}

const memberFromRow = (row: MemberRow): Member => ({
  memberId: row.member_id,
  tenantId: row.tenant_id,
  email: row.email,
  role: row.role,
  passwordHash: row.password_hash,
  createdAt: toDate(row.created_at),
})
const sessionFromRow = (row: SessionRow): SessionRecord => ({
  sessionDigest: row.session_digest,
  memberId: row.member_id,
  csrfToken: row.csrf_token,
  createdAt: toDate(row.created_at),
  lastSeenAt: toDate(row.last_seen_at),
  flash: row.flash ?? null,
})
const activityFromRow = (row: ActivityRow): ActivityEvent => ({
  id: Number(row.id),
  tenantId: row.tenant_id,
  at: toDate(row.at),
  actorType: row.actor_type,
  actor: row.actor,
  action: row.action,
  target: row.target,
  ip: row.ip,
})

/** SQLite migrations, one step per version, never edited once released. */
export const SQLITE_MIGRATIONS: readonly string[] = Object.freeze([
  `CREATE TABLE saiku_members (
     member_id TEXT PRIMARY KEY,
     tenant_id TEXT NOT NULL REFERENCES saiku_tenants (tenant_id),
     email TEXT NOT NULL UNIQUE,
     role TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
     password_hash TEXT NOT NULL,
     created_at INTEGER NOT NULL
   );
   CREATE INDEX saiku_members_by_tenant ON saiku_members (tenant_id, email);
   CREATE TABLE saiku_sessions (
     session_digest TEXT PRIMARY KEY,
     member_id TEXT NOT NULL REFERENCES saiku_members (member_id) ON DELETE CASCADE,
     csrf_token TEXT NOT NULL,
     form_nonce TEXT,
     created_at INTEGER NOT NULL,
     last_seen_at INTEGER NOT NULL
   );
   CREATE INDEX saiku_sessions_by_member ON saiku_sessions (member_id);
   CREATE TABLE saiku_activity (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     tenant_id TEXT NOT NULL,
     at INTEGER NOT NULL,
     actor_type TEXT NOT NULL CHECK (actor_type IN ('member', 'api_key', 'cli')),
     actor TEXT NOT NULL,
     action TEXT NOT NULL,
     target TEXT,
     ip TEXT
   );
   CREATE INDEX saiku_activity_by_tenant ON saiku_activity (tenant_id, id);`,
  // form_nonce now holds up to MAX_FORM_NONCES nonces, space-separated.
  `ALTER TABLE saiku_sessions ADD COLUMN flash TEXT;`,
])

/** PostgreSQL migrations, in the key store's schema. */
export const POSTGRES_MIGRATIONS: readonly ((schema: string) => string)[] = Object.freeze([
  (s: string) => `
    CREATE TABLE ${s}.saiku_members (
      member_id text PRIMARY KEY,
      tenant_id text NOT NULL REFERENCES ${s}.saiku_tenants (tenant_id),
      email text NOT NULL UNIQUE,
      role text NOT NULL CHECK (role IN ('admin', 'viewer')),
      password_hash text NOT NULL,
      created_at timestamptz NOT NULL
    );
    CREATE INDEX saiku_members_by_tenant ON ${s}.saiku_members (tenant_id, email);
    CREATE TABLE ${s}.saiku_sessions (
      session_digest text PRIMARY KEY,
      member_id text NOT NULL REFERENCES ${s}.saiku_members (member_id) ON DELETE CASCADE,
      csrf_token text NOT NULL,
      form_nonce text,
      created_at timestamptz NOT NULL,
      last_seen_at timestamptz NOT NULL
    );
    CREATE INDEX saiku_sessions_by_member ON ${s}.saiku_sessions (member_id);
    CREATE TABLE ${s}.saiku_activity (
      id bigserial PRIMARY KEY,
      tenant_id text NOT NULL,
      at timestamptz NOT NULL,
      actor_type text NOT NULL CHECK (actor_type IN ('member', 'api_key', 'cli')),
      actor text NOT NULL,
      action text NOT NULL,
      target text,
      ip text
    );
    CREATE INDEX saiku_activity_by_tenant ON ${s}.saiku_activity (tenant_id, id);`,
  // form_nonce now holds up to MAX_FORM_NONCES nonces, space-separated.
  (s: string) => `ALTER TABLE ${s}.saiku_sessions ADD COLUMN flash text;`,
])

const nonceList = (stored: string | null | undefined): string[] =>
  stored == null || stored === '' ? [] : stored.split(' ')

function sqliteDashboardStore(keyStore: SqliteKeyStore): DashboardStore {
  const db = keyStore.db
  db.exec('CREATE TABLE IF NOT EXISTS saiku_dashboard_schema_version (version INTEGER NOT NULL)')
  db.transaction(() => {
    const row = db.prepare<[], { version: number }>('SELECT version FROM saiku_dashboard_schema_version').get()
    const current = row?.version ?? 0
    for (let version = current; version < SQLITE_MIGRATIONS.length; version++) db.exec(SQLITE_MIGRATIONS[version]!)
    if (row === undefined)
      db.prepare('INSERT INTO saiku_dashboard_schema_version (version) VALUES (?)').run(SQLITE_MIGRATIONS.length)
    else db.prepare('UPDATE saiku_dashboard_schema_version SET version = ?').run(SQLITE_MIGRATIONS.length)
  }).immediate()

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
    createSession: db.prepare(
      'INSERT INTO saiku_sessions (session_digest, member_id, csrf_token, created_at, last_seen_at) VALUES (@session_digest, @member_id, @csrf_token, @created_at, @last_seen_at)',
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
    recordActivity: db.prepare(
      'INSERT INTO saiku_activity (tenant_id, at, actor_type, actor, action, target, ip) VALUES (@tenant_id, @at, @actor_type, @actor, @action, @target, @ip)',
    ),
    listActivity: db.prepare<[string, number], ActivityRow>(
      'SELECT * FROM saiku_activity WHERE tenant_id = ? ORDER BY id DESC LIMIT ?',
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
    async createSession(s) {
      q.createSession.run({
        session_digest: s.sessionDigest,
        member_id: s.memberId,
        csrf_token: s.csrfToken,
        created_at: s.createdAt.getTime(),
        last_seen_at: s.lastSeenAt.getTime(),
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
    async recordActivity(e) {
      q.recordActivity.run({
        tenant_id: e.tenantId,
        at: (e.at ?? new Date()).getTime(),
        actor_type: e.actorType,
        actor: e.actor,
        action: e.action,
        target: e.target ?? null,
        ip: e.ip ?? null,
      })
    },
    async listActivity(tenantId, limit) {
      return q.listActivity.all(tenantId, limit).map(activityFromRow)
    },
  }
}

function postgresDashboardStore(keyStore: PostgresKeyStore): DashboardStore {
  const { pool } = keyStore
  const s = `"${keyStore.schema}"`
  const t = { members: `${s}.saiku_members`, sessions: `${s}.saiku_sessions`, activity: `${s}.saiku_activity` }
  let migrated: Promise<void> | undefined
  const ready = (): Promise<void> =>
    (migrated ??= (async () => {
      await keyStore.ready() // the tenants table first
      const client = await pool.connect()
      try {
        await client.query('BEGIN')
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`saiku_dashboard_migrate_${keyStore.schema}`])
        await client.query(`CREATE TABLE IF NOT EXISTS ${s}.saiku_dashboard_schema_version (version integer NOT NULL)`)
        const { rows } = await client.query<{ version: number }>(
          `SELECT version FROM ${s}.saiku_dashboard_schema_version`,
        )
        const current = rows[0]?.version ?? 0
        for (let version = current; version < POSTGRES_MIGRATIONS.length; version++)
          await client.query(POSTGRES_MIGRATIONS[version]!(s))
        if (rows.length === 0)
          await client.query(`INSERT INTO ${s}.saiku_dashboard_schema_version (version) VALUES ($1)`, [
            POSTGRES_MIGRATIONS.length,
          ])
        else
          await client.query(`UPDATE ${s}.saiku_dashboard_schema_version SET version = $1`, [
            POSTGRES_MIGRATIONS.length,
          ])
        await client.query('COMMIT')
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {})
        throw error
      } finally {
        client.release()
      }
    })().catch((error: unknown) => {
      migrated = undefined
      throw error
    }))
  const query = async <R extends object = Record<string, unknown>>(text: string, values: unknown[]) => {
    await ready()
    return pool.query<R>(text, values)
  }
  /** Runs statements in one transaction on one connection. */
  const inTransaction = async <T>(
    work: (run: (text: string, values: unknown[]) => Promise<{ rowCount: number | null }>) => Promise<T>,
  ): Promise<T> => {
    await ready()
    const client = await pool.connect()
    try {
      await client.query('BEGIN')
      const result = await work((text, values) => client.query(text, values))
      await client.query('COMMIT')
      return result
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {})
      throw error
    } finally {
      client.release()
    }
  }

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
    async createSession(x) {
      await query(
        `INSERT INTO ${t.sessions} (session_digest, member_id, csrf_token, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $5)`,
        [x.sessionDigest, x.memberId, x.csrfToken, x.createdAt, x.lastSeenAt],
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
    async recordActivity(e) {
      await query(
        `INSERT INTO ${t.activity} (tenant_id, at, actor_type, actor, action, target, ip) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
        [e.tenantId, e.at ?? new Date(), e.actorType, e.actor, e.action, e.target ?? null, e.ip ?? null],
      )
    },
    async listActivity(tenantId, limit) {
      const { rows } = await query<ActivityRow>(
        `SELECT * FROM ${t.activity} WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2`,
        [tenantId, limit],
      )
      return rows.map(activityFromRow)
    },
  }
}

/** The dashboard's tables in the key store's own database: the SQLite file, or the PostgreSQL schema. */
export async function openDashboardStore(store: TenantAdminStore): Promise<DashboardStore> {
  if (store instanceof SqliteKeyStore) return sqliteDashboardStore(store)
  if (store instanceof PostgresKeyStore) {
    const dashboard = postgresDashboardStore(store)
    await dashboard.listActivity('', 1) // migrates now, so a broken database fails at start-up
    return dashboard
  }
  throw new Error('The dashboard needs the SQLite or PostgreSQL key store.')
}
