import { randomUUID } from 'node:crypto'
import { PostgresKeyStore } from '@saiku/postgres'
import { SqliteKeyStore } from '@saiku/sqlite'
import pg from 'pg'
import { describe, expect, it } from 'vitest'
import { MAX_FORM_NONCES, openDashboardStore } from '../src/dashboard/store/index.js'
import { POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS } from '../src/dashboard/store/database.js'
import { calendarDate } from '../src/dashboard/shared/forms.js'
import { safeNext } from '../src/dashboard/shared/redirects.js'
import { formatTime } from '../src/dashboard/shared/render.js'
import { normalizeEmail } from '../src/dashboard/members.js'
import { generatePassword, hashPassword, passwordProblem, verifyPassword } from '../src/dashboard/shared/passwords.js'
import { readDashboardSettings } from '../src/dashboard/settings.js'
import { createTenant } from '../src/tenants.js'
import { postgresUrl } from './services.js'

describe('passwords', () => {
  it('hashes with scrypt at a current recommended cost, salted, and verifies only the right password', async () => {
    const hash = await hashPassword('correct horse battery staple')
    expect(hash).toMatch(/^scrypt\$N=65536,r=8,p=2\$[\w-]{22}\$[\w-]{43}$/)
    expect(hash).not.toContain('correct horse')
    expect(await hashPassword('correct horse battery staple')).not.toBe(hash)
    expect(await verifyPassword('correct horse battery staple', hash)).toBe(true)
    expect(await verifyPassword('correct horse battery stapl', hash)).toBe(false)
    expect(await verifyPassword('', hash)).toBe(false)
  })

  it('treats a malformed stored hash or an over-long password as a mismatch, never a throw', async () => {
    expect(await verifyPassword('anything', 'plaintext')).toBe(false)
    expect(await verifyPassword('anything', 'scrypt$N=1,r=1,p=1$short$short')).toBe(false)
    expect(await verifyPassword('anything', `scrypt$N=1000,r=8,p=1$${'a'.repeat(22)}$${'b'.repeat(43)}`)).toBe(false)
    expect(await verifyPassword('x'.repeat(2000), await hashPassword('x'.repeat(20)))).toBe(false)
  })

  it('generates 20-character passwords without look-alike letters, and checks lengths', () => {
    const passwords = new Set(Array.from({ length: 50 }, generatePassword))
    expect(passwords.size).toBe(50)
    for (const password of passwords) expect(password).toMatch(/^[a-km-zA-HJ-NP-Z2-9]{20}$/)
    expect(passwordProblem('short')).toBe('a password needs at least 12 characters')
    expect(passwordProblem('x'.repeat(1025))).toBe('a password has at most 1024 characters')
    expect(passwordProblem('long enough pass')).toBeNull()
  })
})

describe('member emails', () => {
  it('are trimmed and lower-cased, and anything else is refused with what was given', () => {
    expect(normalizeEmail('  Ada@Example.COM ')).toBe('ada@example.com')
    for (const bad of [
      '',
      'ada',
      'ada@',
      '@example.com',
      'a b@example.com',
      'ada@example',
      '<x>@example.com',
      `${'a'.repeat(65)}@example.com`,
    ]) {
      expect(() => normalizeEmail(bad), bad).toThrow('is not an email address')
    }
  })

  it('are what the sign-in form can submit: ASCII, so nothing a terminal obeys, and refused input is quoted escaped', () => {
    expect(normalizeEmail(" O'Brien+ops@Example.COM ")).toBe("o'brien+ops@example.com")
    expect(normalizeEmail('ada@xn--exmple-cua.com')).toBe('ada@xn--exmple-cua.com')
    for (const bad of [
      'josé@example.com',
      'ada@exämple.com',
      'ada\u009b@example.com',
      'a\u001b[31m@example.com',
      'ada\u202e@example.com',
      'ada\u200b@example.com',
      'ada@example.com\u2066',
    ]) {
      let message = ''
      try {
        normalizeEmail(bad)
      } catch (error) {
        message = (error as Error).message
      }
      expect(message, JSON.stringify(bad)).toContain('is not an email address the sign-in form accepts')
      expect(message, JSON.stringify(bad)).not.toMatch(/[\p{Cc}\p{Cf}]/u)
    }
  })
})

describe('session settings', () => {
  it('default to a 30-minute idle and a 12-hour absolute timeout, trusting no proxy', () => {
    expect(readDashboardSettings({})).toEqual({
      idleTimeoutSeconds: 1800,
      absoluteTimeoutSeconds: 43200,
      trustProxy: false,
      publicOrigin: null,
    })
  })

  it('read the environment and refuse what they cannot use, naming the variable', () => {
    expect(
      readDashboardSettings({
        SESSION_IDLE_TIMEOUT_SECONDS: '600',
        SESSION_ABSOLUTE_TIMEOUT_SECONDS: '3600',
        TRUST_PROXY: '1',
      }),
    ).toEqual({
      idleTimeoutSeconds: 600,
      absoluteTimeoutSeconds: 3600,
      trustProxy: 1,
      publicOrigin: null,
    })
    expect(readDashboardSettings({ TRUST_PROXY: 'loopback, 10.0.0.0/8' }).trustProxy).toBe('loopback, 10.0.0.0/8')
    expect(() => readDashboardSettings({ SESSION_IDLE_TIMEOUT_SECONDS: '0' })).toThrow(
      'SESSION_IDLE_TIMEOUT_SECONDS: expected a positive number of seconds, got "0"',
    )
    expect(() => readDashboardSettings({ SESSION_ABSOLUTE_TIMEOUT_SECONDS: '1h' })).toThrow(
      'SESSION_ABSOLUTE_TIMEOUT_SECONDS',
    )
    expect(() =>
      readDashboardSettings({ SESSION_IDLE_TIMEOUT_SECONDS: '7200', SESSION_ABSOLUTE_TIMEOUT_SECONDS: '3600' }),
    ).toThrow('SESSION_ABSOLUTE_TIMEOUT_SECONDS (3600) must be at least SESSION_IDLE_TIMEOUT_SECONDS (7200)')
    expect(() => readDashboardSettings({ TRUST_PROXY: '$(rm -rf)' })).toThrow('TRUST_PROXY')
  })
})

describe('PUBLIC_ORIGIN', () => {
  it('is read as the origin a browser sends: scheme and host, lower-case, without a default port', () => {
    const origin = (value: string) => readDashboardSettings({ PUBLIC_ORIGIN: value }).publicOrigin
    expect(origin('https://saiku.example.com')).toBe('https://saiku.example.com')
    expect(origin('https://Saiku.Example.com/')).toBe('https://saiku.example.com')
    expect(origin('https://saiku.example.com:443')).toBe('https://saiku.example.com')
    expect(origin('http://10.0.0.5:8080')).toBe('http://10.0.0.5:8080')
  })

  it('refuses anything else with one line naming the variable and what was given', () => {
    for (const bad of [
      'saiku.example.com',
      'https://saiku.example.com/dashboard',
      'https://saiku.example.com?x=1',
      'https://saiku.example.com#top',
      'https://user:pass@saiku.example.com',
      'ftp://saiku.example.com',
      'https://',
      'https://saiku.example.com, https://other.example',
    ]) {
      expect(() => readDashboardSettings({ PUBLIC_ORIGIN: bad }), bad).toThrow(
        `PUBLIC_ORIGIN: expected a scheme and host such as https://saiku.example.com (no path), got ${JSON.stringify(bad)}`,
      )
    }
  })
})

describe('the path to go back to after sign-in', () => {
  it('is a path of this site', () => {
    for (const path of ['/', '/billing', '/api-keys/new', '/usage?x=1#y', '/a/b%2F%2Fc', '/.//evil.example'])
      expect(safeNext(path), path).toBe(path)
  })

  it('is never another site, a scheme, or what a URL parser would make one of', () => {
    for (const hostile of [
      '//evil.example',
      '//evil.example/billing',
      '/\\evil.example',
      '/\\/evil.example',
      '\\\\evil.example',
      'https://evil.example',
      'javascript:alert(1)',
      'data:text/html,x',
      'billing',
      '',
      ' /billing',
      '/\t/evil.example',
      '/\n/evil.example',
      '/\r\n/evil.example',
      '/ /evil.example',
      '/\u3000/evil.example',
      '/x\\y',
      `/${'a'.repeat(2_000)}`,
    ]) {
      expect(safeNext(hostile), JSON.stringify(hostile)).toBeNull()
    }
    expect(safeNext(['/billing'])).toBeNull()
    expect(safeNext(undefined)).toBeNull()
  })
})

describe('expiry dates', () => {
  it('name a day of the calendar, or nothing', () => {
    expect(calendarDate('2027-02-28')?.toISOString()).toBe('2027-02-28T00:00:00.000Z')
    expect(calendarDate('2028-02-29')?.toISOString()).toBe('2028-02-29T00:00:00.000Z')
    for (const bad of [
      '2027-02-31',
      '2027-02-29',
      '2027-04-31',
      '2027-13-01',
      '2027-00-10',
      '2027-01-00',
      '2027-1-5',
      '27-01-05',
      '',
    ])
      expect(calendarDate(bad), bad).toBeNull()
  })
})

describe('formatTime', () => {
  it('writes one UTC format whatever the server’s locale', () => {
    expect(formatTime(new Date('2026-03-04T05:06:07Z'))).toBe('4\u00a0Mar\u00a02026, 05:06\u00a0UTC')
    expect(formatTime(null)).toBe('Never')
  })
})

describe.each([
  { name: 'SQLite', skip: false },
  { name: 'PostgreSQL', skip: postgresUrl === undefined },
])('a session’s form nonces and notice, stored ($name)', ({ name, skip }) => {
  it.skipIf(skip)('keep the newest ten nonces, each taken once even when raced, and a notice taken once', async () => {
    const schema = `saiku_nonce_${randomUUID().replaceAll('-', '').slice(0, 12)}`
    const pool = name === 'PostgreSQL' ? new pg.Pool({ connectionString: postgresUrl }) : undefined
    const store =
      pool === undefined
        ? new SqliteKeyStore(':memory:', { watchIntervalMs: 0 })
        : new PostgresKeyStore({ pool, schema, listen: false })
    try {
      await store.putTenant({
        tenantId: 't',
        tenantSlug: 't',
        tier: 'team',
        connectionName: 'x',
        subscription: { status: 'active', trialEndsAt: null },
        limits: null,
      })
      const dashboard = await openDashboardStore(store)
      const now = new Date()
      await dashboard.addMember({
        memberId: 'm',
        tenantId: 't',
        email: 'a@example.com',
        role: 'admin',
        passwordHash: 'x',
        createdAt: now,
      })
      await dashboard.createSession({
        sessionDigest: 's',
        memberId: 'm',
        csrfToken: 'c',
        createdAt: now,
        lastSeenAt: now,
      })
      const nonces = Array.from({ length: MAX_FORM_NONCES + 1 }, (_, i) => `nonce-${i}`)
      for (const nonce of nonces) await dashboard.addFormNonce('s', nonce)
      expect(await dashboard.takeFormNonce('s', nonces[0]!)).toBe(false)
      // Ten submissions of one form at once: one of them takes it.
      const raced = await Promise.all(Array.from({ length: 10 }, () => dashboard.takeFormNonce('s', nonces[5]!)))
      expect(raced.filter(Boolean)).toHaveLength(1)
      for (const nonce of nonces.slice(1)) expect(await dashboard.takeFormNonce('s', nonce)).toBe(nonce !== nonces[5])
      for (const nonce of nonces) expect(await dashboard.takeFormNonce('s', nonce)).toBe(false)
      expect(await dashboard.takeFormNonce('other-session', nonces[1]!)).toBe(false)

      expect((await dashboard.findSession('s'))?.flash).toBeNull()
      await dashboard.setFlash('s', 'Key abc revoked.')
      expect((await dashboard.findSession('s'))?.flash).toBe('Key abc revoked.')
      const taken = await Promise.all([
        dashboard.takeFlash('s', 'Key abc revoked.'),
        dashboard.takeFlash('s', 'Key abc revoked.'),
      ])
      expect(taken.filter(Boolean)).toHaveLength(1)
      expect((await dashboard.findSession('s'))?.flash).toBeNull()
    } finally {
      if (pool === undefined) (store as SqliteKeyStore).close()
      else {
        await (store as PostgresKeyStore).close()
        await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
        await pool.end()
      }
    }
  })
})

describe.each([
  { name: 'SQLite', skip: false },
  { name: 'PostgreSQL', skip: postgresUrl === undefined },
])('the activity table at the previous version ($name)', ({ name, skip }) => {
  it.skipIf(skip)('upgrades to take the system actor, keeping its rows, their IDs and the ones after', async () => {
    const schema = `saiku_upgrade_${randomUUID().replaceAll('-', '').slice(0, 12)}`
    const pool = name === 'PostgreSQL' ? new pg.Pool({ connectionString: postgresUrl }) : undefined
    const store =
      pool === undefined
        ? new SqliteKeyStore(':memory:', { watchIntervalMs: 0 })
        : new PostgresKeyStore({ pool, schema, listen: false })
    // The steps before the one that added 'system'; later steps (invitations, two-factor) run after it on upgrade.
    const previous = 2
    expect(SQLITE_MIGRATIONS[previous]).toContain("'system'")
    expect(POSTGRES_MIGRATIONS[previous]!('s')).toContain("'system'")
    expect(POSTGRES_MIGRATIONS.length).toBe(SQLITE_MIGRATIONS.length)
    const insert = (actorType: string, id: number) =>
      `INSERT INTO ${pool === undefined ? '' : `"${schema}".`}saiku_activity (id, tenant_id, at, actor_type, actor, action, target, ip)
       VALUES (${id}, 't', ${pool === undefined ? '1000' : 'to_timestamp(1)'}, '${actorType}', 'a@example.com', 'sign_in', null, '127.0.0.1')`
    try {
      // A database the previous release left: the dashboard's steps up to the one before the last.
      if (pool === undefined) {
        const { db } = store as SqliteKeyStore
        db.exec('CREATE TABLE saiku_dashboard_schema_version (version INTEGER NOT NULL)')
        for (const step of SQLITE_MIGRATIONS.slice(0, previous)) db.exec(step)
        db.prepare('INSERT INTO saiku_dashboard_schema_version (version) VALUES (?)').run(previous)
        db.exec(insert('member', 1))
        db.exec(insert('cli', 7))
        expect(() => db.exec(insert('system', 8))).toThrow(/CHECK/)
      } else {
        await (store as PostgresKeyStore).ready()
        const s = `"${schema}"`
        await pool.query(`CREATE TABLE ${s}.saiku_dashboard_schema_version (version integer NOT NULL)`)
        for (const step of POSTGRES_MIGRATIONS.slice(0, previous)) await pool.query(step(s))
        await pool.query(`INSERT INTO ${s}.saiku_dashboard_schema_version (version) VALUES ($1)`, [previous])
        await pool.query(insert('member', 1))
        await pool.query(insert('cli', 7))
        await pool.query(`SELECT setval(pg_get_serial_sequence('${s}.saiku_activity', 'id'), 7)`)
        await expect(pool.query(insert('system', 8))).rejects.toThrow(/check constraint/)
      }

      const dashboard = await openDashboardStore(store)
      await dashboard.recordActivity({
        tenantId: 't',
        actorType: 'system',
        actor: 'billing period end',
        action: 'plan.changed',
        target: 'team → starter',
      })
      const rows = await dashboard.listActivity('t', 10)
      expect(rows.map((e) => [e.id, e.actorType, e.actor, e.action, e.target, e.ip])).toEqual([
        [8, 'system', 'billing period end', 'plan.changed', 'team → starter', null],
        [7, 'cli', 'a@example.com', 'sign_in', null, '127.0.0.1'],
        [1, 'member', 'a@example.com', 'sign_in', null, '127.0.0.1'],
      ])
      expect(rows[2]!.at.getTime()).toBe(1000)
      // The CHECK still refuses what is not an actor type.
      await expect(
        dashboard.recordActivity({ tenantId: 't', actorType: 'robot' as 'system', actor: 'x', action: 'y' }),
      ).rejects.toThrow(/CHECK|check constraint/)
      // Opening again finds the newest version and changes nothing.
      expect(await (await openDashboardStore(store)).listActivity('t', 10)).toHaveLength(3)
    } finally {
      if (pool === undefined) (store as SqliteKeyStore).close()
      else {
        await (store as PostgresKeyStore).close()
        await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
        await pool.end()
      }
    }
  })
})

describe.each([
  { name: 'SQLite', skip: false },
  { name: 'PostgreSQL', skip: postgresUrl === undefined },
])('the members and sessions at the version before two-factor ($name)', ({ name, skip }) => {
  it.skipIf(skip)(
    'upgrades keeping members and sessions: no second factor, signed in, no recent password check',
    async () => {
      const schema = `saiku_upgrade_${randomUUID().replaceAll('-', '').slice(0, 12)}`
      const pool = name === 'PostgreSQL' ? new pg.Pool({ connectionString: postgresUrl }) : undefined
      const store =
        pool === undefined
          ? new SqliteKeyStore(':memory:', { watchIntervalMs: 0 })
          : new PostgresKeyStore({ pool, schema, listen: false })
      const previous = 4 // the release before two-factor: up to the invitations
      const s = pool === undefined ? '' : `"${schema}".`
      const rows = [
        `INSERT INTO ${s}saiku_members (member_id, tenant_id, email, role, password_hash, created_at)
         VALUES ('m', 't', 'a@example.com', 'admin', 'scrypt$x', ${pool === undefined ? '1000' : 'to_timestamp(1)'})`,
        `INSERT INTO ${s}saiku_sessions (session_digest, member_id, csrf_token, created_at, last_seen_at)
         VALUES ('d', 'm', 'c', ${pool === undefined ? '1000, 2000' : 'to_timestamp(1), to_timestamp(2)'})`,
      ]
      try {
        if (pool === undefined) {
          const { db } = store as SqliteKeyStore
          db.exec('CREATE TABLE saiku_dashboard_schema_version (version INTEGER NOT NULL)')
          for (const step of SQLITE_MIGRATIONS.slice(0, previous)) db.exec(step)
          db.prepare('INSERT INTO saiku_dashboard_schema_version (version) VALUES (?)').run(previous)
          const { tenantId } = await createTenant(store, { slug: 'acme', tier: 'team', subscription: 'active' })
          for (const row of rows) db.exec(row.replace("'t'", `'${tenantId}'`))
        } else {
          await (store as PostgresKeyStore).ready()
          await pool.query(`CREATE TABLE "${schema}".saiku_dashboard_schema_version (version integer NOT NULL)`)
          for (const step of POSTGRES_MIGRATIONS.slice(0, previous)) await pool.query(step(`"${schema}"`))
          await pool.query(`INSERT INTO "${schema}".saiku_dashboard_schema_version (version) VALUES ($1)`, [previous])
          const { tenantId } = await createTenant(store, { slug: 'acme', tier: 'team', subscription: 'active' })
          for (const row of rows) await pool.query(row.replace("'t'", `'${tenantId}'`))
        }
        const dashboard = await openDashboardStore(store)
        expect((await dashboard.findMember('m'))?.totpSecret).toBeNull()
        expect((await dashboard.findMember('m'))?.email).toBe('a@example.com')
        const session = await dashboard.findSession('d')
        expect(session).toMatchObject({ memberId: 'm', stage: 'full', verifiedAt: null, userAgent: null, ip: null })
        expect(session!.lastSeenAt.getTime()).toBe(2000)
        expect(await dashboard.requiresTwoFactor('t')).toBe(false)
        expect(await dashboard.countRecoveryCodes('m')).toBe(0)
        // A used step is good once; a recovery code once.
        expect(await dashboard.enableTwoFactor('m', 'v1.sealed', 5, ['r1', 'r2'])).toBe(true)
        expect(await dashboard.enableTwoFactor('m', 'v1.other', 9, ['r3'])).toBe(false)
        expect(await Promise.all([dashboard.useTotpStep('m', 5), dashboard.useTotpStep('m', 6)])).toEqual([false, true])
        expect(await dashboard.useTotpStep('m', 6)).toBe(false)
        expect(await Promise.all([dashboard.useRecoveryCode('m', 'r1'), dashboard.useRecoveryCode('m', 'r1')])).toEqual(
          expect.arrayContaining([true, false]),
        )
        expect(await dashboard.countRecoveryCodes('m')).toBe(1)
        expect(await dashboard.disableTwoFactor('m')).toBe(true)
        expect(await dashboard.countRecoveryCodes('m')).toBe(0)
        expect(await dashboard.replaceRecoveryCodes('m', ['r9'])).toBe(false)
      } finally {
        if (pool === undefined) (store as SqliteKeyStore).close()
        else {
          await (store as PostgresKeyStore).close()
          await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
          await pool.end()
        }
      }
    },
  )
})
