import type { PostgresKeyStore } from '@saiku/postgres'
import type { SqliteKeyStore } from '@saiku/sqlite'
import { migratePostgresSteps, migrateSqliteSteps } from '../../migrate.js'

// The dashboard's tables (members, sessions, the activity log) live in the same database as the keys,
// beside them, with their own schema version. This file holds the schema of both databases and what
// every aggregate's queries stand on; the queries themselves are in members.ts, sessions.ts, activity.ts,
// invitations.ts.

/** The key store's SQLite connection, which the dashboard's tables share. */
export type SqliteDatabase = SqliteKeyStore['db']

/** A time as a driver returns it: a Date (pg), or milliseconds as a number or a string (SQLite). */
export type Time = Date | number | string

export const toDate = (value: Time): Date =>
  value instanceof Date ? value : new Date(typeof value === 'string' ? Number(value) : value)

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
  // actor_type gains 'system' (a change the billing period's end applied). SQLite cannot alter a CHECK:
  // the table is rebuilt, its rows and IDs kept, inside the migration's transaction.
  `CREATE TABLE saiku_activity_next (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     tenant_id TEXT NOT NULL,
     at INTEGER NOT NULL,
     actor_type TEXT NOT NULL CHECK (actor_type IN ('member', 'api_key', 'cli', 'system')),
     actor TEXT NOT NULL,
     action TEXT NOT NULL,
     target TEXT,
     ip TEXT
   );
   INSERT INTO saiku_activity_next (id, tenant_id, at, actor_type, actor, action, target, ip)
     SELECT id, tenant_id, at, actor_type, actor, action, target, ip FROM saiku_activity;
   DROP TABLE saiku_activity;
   ALTER TABLE saiku_activity_next RENAME TO saiku_activity;
   CREATE INDEX saiku_activity_by_tenant ON saiku_activity (tenant_id, id);`,
  // Invitations: one pending a tenant and email, kept as the token's digest until it is used, revoked or expires.
  `CREATE TABLE saiku_invitations (
     invitation_id TEXT PRIMARY KEY,
     token_digest TEXT NOT NULL UNIQUE,
     tenant_id TEXT NOT NULL REFERENCES saiku_tenants (tenant_id),
     email TEXT NOT NULL,
     role TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
     invited_by TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     expires_at INTEGER NOT NULL,
     UNIQUE (tenant_id, email)
   );`,
  // Two-factor sign-in, re-authentication and the sessions list: a member's TOTP secret (encrypted) and the
  // last time step used; a session's stage (signed in, or waiting for a code or an enrolment), the time of its
  // last password check, its browser and address; hashed recovery codes; a tenant's two-factor requirement.
  `ALTER TABLE saiku_members ADD COLUMN totp_secret TEXT;
   ALTER TABLE saiku_members ADD COLUMN totp_last_step INTEGER;
   ALTER TABLE saiku_sessions ADD COLUMN stage TEXT NOT NULL DEFAULT 'full' CHECK (stage IN ('full', 'code', 'enrol'));
   ALTER TABLE saiku_sessions ADD COLUMN verified_at INTEGER;
   ALTER TABLE saiku_sessions ADD COLUMN user_agent TEXT;
   ALTER TABLE saiku_sessions ADD COLUMN ip TEXT;
   ALTER TABLE saiku_sessions ADD COLUMN enrol_secret TEXT;
   CREATE TABLE saiku_recovery_codes (
     member_id TEXT NOT NULL REFERENCES saiku_members (member_id) ON DELETE CASCADE,
     code_digest TEXT NOT NULL,
     PRIMARY KEY (member_id, code_digest)
   );
   CREATE TABLE saiku_tenant_security (
     tenant_id TEXT PRIMARY KEY,
     require_two_factor INTEGER NOT NULL DEFAULT 0
   );`,
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
  // actor_type gains 'system' (a change the billing period's end applied); the first step's CHECK has
  // PostgreSQL's default name.
  (s: string) => `
    ALTER TABLE ${s}.saiku_activity DROP CONSTRAINT saiku_activity_actor_type_check;
    ALTER TABLE ${s}.saiku_activity ADD CONSTRAINT saiku_activity_actor_type_check
      CHECK (actor_type IN ('member', 'api_key', 'cli', 'system'));`,
  // Invitations: one pending a tenant and email, kept as the token's digest until it is used, revoked or expires.
  (s: string) => `
    CREATE TABLE ${s}.saiku_invitations (
      invitation_id text PRIMARY KEY,
      token_digest text NOT NULL UNIQUE,
      tenant_id text NOT NULL REFERENCES ${s}.saiku_tenants (tenant_id),
      email text NOT NULL,
      role text NOT NULL CHECK (role IN ('admin', 'viewer')),
      invited_by text NOT NULL,
      created_at timestamptz NOT NULL,
      expires_at timestamptz NOT NULL,
      UNIQUE (tenant_id, email)
    );`,
  // Two-factor sign-in, re-authentication and the sessions list, as in the SQLite step.
  (s: string) => `
    ALTER TABLE ${s}.saiku_members ADD COLUMN totp_secret text, ADD COLUMN totp_last_step bigint;
    ALTER TABLE ${s}.saiku_sessions
      ADD COLUMN stage text NOT NULL DEFAULT 'full' CHECK (stage IN ('full', 'code', 'enrol')),
      ADD COLUMN verified_at timestamptz,
      ADD COLUMN user_agent text,
      ADD COLUMN ip text,
      ADD COLUMN enrol_secret text;
    CREATE TABLE ${s}.saiku_recovery_codes (
      member_id text NOT NULL REFERENCES ${s}.saiku_members (member_id) ON DELETE CASCADE,
      code_digest text NOT NULL,
      PRIMARY KEY (member_id, code_digest)
    );
    CREATE TABLE ${s}.saiku_tenant_security (
      tenant_id text PRIMARY KEY,
      require_two_factor boolean NOT NULL DEFAULT false
    );`,
])

/** Brings the SQLite file's dashboard tables to the newest version, in one transaction. */
export function migrateSqlite(db: SqliteDatabase): void {
  migrateSqliteSteps(db, 'saiku_dashboard_schema_version', SQLITE_MIGRATIONS)
}

/** Runs one statement; resolves to what pg's `query` does, rows and rowCount included. */
type Run = <R extends object = Record<string, unknown>>(
  text: string,
  values: unknown[],
) => Promise<{ rows: R[]; rowCount: number | null }>

/** What each aggregate's PostgreSQL half is given: its tables' names, and queries that wait for the migration. */
export interface PostgresTables {
  readonly tables: {
    readonly members: string
    readonly sessions: string
    readonly activity: string
    readonly invitations: string
    readonly recoveryCodes: string
    readonly tenantSecurity: string
  }
  readonly query: <R extends object = Record<string, unknown>>(
    text: string,
    values: unknown[],
  ) => Promise<{ rows: R[]; rowCount: number | null }>
  /** Runs statements in one transaction on one connection. */
  readonly inTransaction: <T>(work: (run: Run) => Promise<T>) => Promise<T>
}

/**
 * The dashboard's tables in the key store's PostgreSQL schema. They are migrated on the first query, once, under
 * an advisory lock so that two processes starting together do not both migrate; a failed migration is tried again.
 */
export function postgresTables(keyStore: PostgresKeyStore): PostgresTables {
  const { pool } = keyStore
  const s = `"${keyStore.schema}"`
  let migrated: Promise<void> | undefined
  const ready = (): Promise<void> =>
    (migrated ??= (async () => {
      await keyStore.ready() // the tenants table first
      await migratePostgresSteps(
        keyStore,
        'saiku_dashboard_schema_version',
        `saiku_dashboard_migrate_${keyStore.schema}`,
        POSTGRES_MIGRATIONS,
      )
    })().catch((error: unknown) => {
      migrated = undefined
      throw error
    }))

  return {
    tables: {
      members: `${s}.saiku_members`,
      sessions: `${s}.saiku_sessions`,
      activity: `${s}.saiku_activity`,
      invitations: `${s}.saiku_invitations`,
      recoveryCodes: `${s}.saiku_recovery_codes`,
      tenantSecurity: `${s}.saiku_tenant_security`,
    },
    query: async <R extends object = Record<string, unknown>>(text: string, values: unknown[]) => {
      await ready()
      return pool.query<R>(text, values)
    },
    inTransaction: async <T>(work: (run: Run) => Promise<T>): Promise<T> => {
      await ready()
      const client = await pool.connect()
      try {
        await client.query('BEGIN')
        const result = await work(<R extends object>(text: string, values: unknown[]) => client.query<R>(text, values))
        await client.query('COMMIT')
        return result
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {})
        throw error
      } finally {
        client.release()
      }
    },
  }
}
