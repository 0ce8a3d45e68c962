import { pino } from 'pino'
import request from 'supertest'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { SqliteKeyStore } from '@saiku/sqlite'
import type { TenantRecord } from '@saiku/core'
import { createApp } from '../src/app.js'
import { inviteMember } from '../src/dashboard/members.js'
import { readDashboardSettings } from '../src/dashboard/settings.js'
import { openDashboardStore } from '../src/dashboard/store/index.js'

// Sign-ups hash one password at a time in a short queue that every tenant shares: one tenant sending its links at
// once takes a few places, never all of them, so another tenant's new member still gets in.

// Each hash waits until the test lets it go, so the queue can be seen full.
const hashes = vi.hoisted(() => ({ started: 0, release: () => {}, released: Promise.resolve() }))
vi.mock('../src/dashboard/shared/passwords.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../src/dashboard/shared/passwords.js')>()
  return {
    ...original,
    hashPassword: async (password: string) => {
      hashes.started++
      await hashes.released
      return original.hashPassword(password)
    },
  }
})

const tenantRecord = (tenantId: string): TenantRecord => ({
  tenantId,
  tenantSlug: tenantId,
  tier: 'team',
  connectionName: 'x',
  subscription: { status: 'active', trialEndsAt: null },
  limits: null,
})

const closers: (() => void)[] = []
afterEach(() => {
  for (const close of closers.splice(0)) close()
})

describe('the sign-up queue', () => {
  it('one tenant sending five links at once gets two places; another tenant’s sign-up is queued, not refused', async () => {
    hashes.released = new Promise<void>((resolve) => (hashes.release = resolve))
    const store = new SqliteKeyStore(':memory:', { watchIntervalMs: 0 })
    for (const id of ['acme', 'globex']) await store.putTenant(tenantRecord(id))
    const dashboard = await openDashboardStore(store)
    const { app, close } = createApp({
      store,
      logger: pino({ level: 'silent' }),
      dashboard: { store: dashboard, settings: readDashboardSettings({}) },
    })
    closers.push(() => {
      close()
      store.close()
    })
    const invite = async (tenantId: string, email: string) =>
      (await inviteMember(dashboard, tenantRecord(tenantId), { email, role: 'viewer' })).token
    const join = (token: string) =>
      request(app)
        .post('/join')
        .type('form')
        .send({ token, password: 'a-good-long-password', confirm: 'a-good-long-password' })
        .timeout(30_000)
        .then((reply) => reply)

    const flood = await Promise.all([0, 1, 2, 3, 4].map((i) => invite('acme', `m${i}@acme.example`)))
    const other = await invite('globex', 'new@globex.example')
    const answers: request.Response[] = []
    const flooding = flood.map((token) => join(token).then((reply) => (answers.push(reply), reply)))
    // Past its share, acme is told to come back; the rest of its sign-ups wait for the hash that runs.
    await vi.waitFor(() => expect(answers.map((reply) => reply.status)).toEqual([503, 503, 503]), { timeout: 15_000 })
    for (const reply of answers) expect(reply.headers['retry-after']).toBe('2')
    expect(hashes.started).toBe(1)

    const joining = join(other)
    hashes.release()
    const [mine, ...theirs] = await Promise.all([joining, ...flooding])
    expect(mine.status).toBe(201)
    expect((await dashboard.findMemberByEmail('new@globex.example'))?.tenantId).toBe('globex')
    expect(theirs.map((reply) => reply.status).sort()).toEqual([201, 201, 503, 503, 503])
    expect((await dashboard.listMembers('acme')).length).toBe(2)
  })
})
