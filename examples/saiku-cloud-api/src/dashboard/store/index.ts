import type { TenantAdminStore } from '@saiku/core'
import { PostgresKeyStore } from '@saiku/postgres'
import { SqliteKeyStore } from '@saiku/sqlite'
import { migrateSqlite, postgresTables } from './database.js'
import { postgresActivity, sqliteActivity, type ActivityStore } from './activity.js'
import { postgresInvitations, sqliteInvitations, type InvitationStore } from './invitations.js'
import { postgresMembers, sqliteMembers, type MemberStore } from './members.js'
import { postgresSessions, sqliteSessions, type SessionStore } from './sessions.js'
import { postgresTwoFactor, sqliteTwoFactor, type TwoFactorStore } from './two-factor.js'

// The dashboard's store: one aggregate a file (members, invitations, sessions, activity, two-factor), each with its
// SQLite and PostgreSQL halves side by side, put together here behind the one interface the dashboard and the CLI use.

export { ROLES, type Member, type MemberChange, type Role } from './members.js'
export type { Invitation, NewMember } from './invitations.js'
export { MAX_FORM_NONCES, type SessionRecord, type SessionStage } from './sessions.js'
export { PERIOD_END_ACTOR, systemActorLabel } from './activity.js'
export type { ActivityEvent, ActivityInput, ActorType } from './activity.js'

export interface DashboardStore extends MemberStore, InvitationStore, SessionStore, ActivityStore, TwoFactorStore {}

/** The dashboard's tables in the key store's own database: the SQLite file, or the PostgreSQL schema. */
export async function openDashboardStore(store: TenantAdminStore): Promise<DashboardStore> {
  if (store instanceof SqliteKeyStore) {
    migrateSqlite(store.db)
    return {
      ...sqliteMembers(store.db),
      ...sqliteInvitations(store.db),
      ...sqliteSessions(store.db),
      ...sqliteActivity(store.db),
      ...sqliteTwoFactor(store.db),
    }
  }
  if (store instanceof PostgresKeyStore) {
    const tables = postgresTables(store)
    const dashboard: DashboardStore = {
      ...postgresMembers(tables),
      ...postgresInvitations(tables),
      ...postgresSessions(tables),
      ...postgresActivity(tables),
      ...postgresTwoFactor(tables),
    }
    await dashboard.listActivity('', 1) // migrates now, so a broken database fails at start-up
    return dashboard
  }
  throw new Error('The dashboard needs the SQLite or PostgreSQL key store.')
}
