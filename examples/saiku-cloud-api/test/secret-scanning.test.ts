// GitHub's secret scanning alerts: signed, checked token by token, a leaked live key revoked once, and
// nothing here ever connects anywhere but this machine (the keys are served on loopback from a local pair).
import { createHash, generateKeyPairSync, randomBytes, randomUUID, scryptSync, sign, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import { isIP, Socket } from 'node:net'
import fc from 'fast-check'
import { pino } from 'pino'
import request from 'supertest'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'
import { API_KEY_PATTERN, createKeyManager, mintApiKey } from '@saiku/core'
import { PostgresKeyStore } from '@saiku/postgres'
import { SqliteKeyStore } from '@saiku/sqlite'
import pg from 'pg'
import { createApp } from '../src/app.js'
import { ConfigError } from '../src/config.js'
import { readDashboardSettings } from '../src/dashboard/settings.js'
import { openDashboardStore } from '../src/dashboard/store/index.js'
import {
  createGithubKeyring,
  readSecretScanningConfig,
  SECRET_SCANNING_PATH,
  type LeakedKeyEvent,
  type SecretScanningOptions,
} from '../src/secret-scanning.js'
import { secretScanningEvents } from '../src/webhooks/events.js'
import { exampleDir } from './helpers.js'
import { postgresUrl } from './services.js'

// ---- The guard: every connection this file's process opens goes to a loopback address, or the test fails.
const connections: string[] = []
const strayConnections: string[] = []
// Put back as it was, and only ever called with its socket as `this`.
// eslint-disable-next-line @typescript-eslint/unbound-method
const originalConnect = Socket.prototype.connect
const isLoopback = (host: string): boolean =>
  host === 'localhost' ||
  host === '::1' ||
  host === '::ffff:127.0.0.1' ||
  (isIP(host) === 4 && host.startsWith('127.')) ||
  (isIP(host) === 0 && host.startsWith('/')) // a Unix socket

beforeAll(() => {
  Socket.prototype.connect = function guarded(this: Socket, ...args: unknown[]) {
    // net.connect passes its arguments normalised: one array of [options, callback].
    const [first, second] = Array.isArray(args[0]) ? args[0] : args
    let host: string
    let port: unknown
    if (typeof first === 'object' && first !== null) {
      const options = first as { host?: string; port?: unknown; path?: string }
      host = options.path ?? options.host ?? 'localhost'
      port = options.port
    } else if (typeof first === 'string' && !/^\d+$/.test(first)) {
      host = first // a Unix socket path
    } else {
      port = first
      host = typeof second === 'string' ? second : 'localhost'
    }
    connections.push(`${host}:${String(port)}`)
    if (!isLoopback(host)) {
      strayConnections.push(`${host}:${String(port)}`)
      throw new Error(`a test tried to connect to ${host}, which is not this machine`)
    }
    return (originalConnect as (...a: unknown[]) => Socket).apply(this, args)
  }
})
afterAll(() => {
  Socket.prototype.connect = originalConnect
  // Start-up, alerts and shutdown of every test went through the guard.
  expect(strayConnections).toEqual([])
})

// ---- GitHub's side, played on loopback: a key pair and the public keys document.
function keyPair(): { privateKey: KeyObject; pem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return { privateKey, pem: publicKey.export({ type: 'spki', format: 'pem' }).toString() }
}
const github = keyPair()
const GITHUB_KEY_ID = '90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a'

interface KeysServer {
  readonly url: string
  readonly requests: () => number
  /** How the next requests are answered: the default serves `document`. */
  answer: (req: IncomingMessage, res: ServerResponse) => void
  document: { public_keys: { key_identifier: string; key: string; is_current: boolean }[] }
  close(): Promise<void>
}

async function startKeysServer(): Promise<KeysServer> {
  let requests = 0
  const server: Server = createServer((req, res) => {
    requests++
    keys.answer(req, res)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  const serve = (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(keys.document))
  }
  const keys: KeysServer = {
    url: `http://127.0.0.1:${port}/meta/public_keys/secret_scanning`,
    requests: () => requests,
    answer: serve,
    document: { public_keys: [{ key_identifier: GITHUB_KEY_ID, key: github.pem, is_current: true }] },
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  return keys
}

const signed = (body: string, identifier = GITHUB_KEY_ID, privateKey = github.privateKey) => ({
  'content-type': 'application/json',
  'github-public-key-identifier': identifier,
  'github-public-key-signature': sign('sha256', Buffer.from(body), privateKey).toString('base64'),
})

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')

const tenant = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'team',
  connectionName: 'w',
  subscription: { status: 'active' as const, trialEndsAt: null },
  limits: null,
}

interface Harness {
  readonly app: Parameters<typeof request>[0]
  readonly store: SqliteKeyStore
  readonly dashboard: Awaited<ReturnType<typeof openDashboardStore>>
  readonly logs: string[]
  readonly leaked: LeakedKeyEvent[]
  /** findKey calls since the harness started. */
  readonly findKeyCalls: () => number
  readonly close: () => void
  /** POSTs `alert` signed by GitHub's key (or as `headers` say). */
  alert(alert: unknown, headers?: Record<string, string>): request.Test
}

let keys: KeysServer
const harnesses: Harness[] = []

beforeEach(async () => {
  keys = await startKeysServer()
})
afterEach(async () => {
  for (const harness of harnesses.splice(0)) harness.close()
  await keys.close()
})

async function harness(
  options: Partial<Omit<SecretScanningOptions, 'config'>> & {
    action?: 'revoke' | 'report'
    /** A store with an outbox, and the hooks the server wires to it, as this picks them (instead of `onLeaked`). */
    outbox?: (events: ReturnType<typeof secretScanningEvents>) => Partial<SecretScanningOptions>
  } = {},
): Promise<Harness> {
  const store = new SqliteKeyStore(':memory:', { watchIntervalMs: 0, outbox: options.outbox !== undefined })
  await store.putTenant(tenant)
  const dashboard = await openDashboardStore(store)
  const logs: string[] = []
  const leaked: LeakedKeyEvent[] = []
  let findKeyCalls = 0
  const findKey = store.findKey.bind(store)
  store.findKey = (keyId: string) => {
    findKeyCalls++
    return findKey(keyId)
  }
  const { action = 'revoke', outbox, ...rest } = options
  const hooks =
    outbox === undefined
      ? { onLeaked: (event: LeakedKeyEvent) => void leaked.push(event) }
      : outbox(secretScanningEvents(store))
  const { app, close } = createApp({
    store,
    logger: pino({ level: 'debug' }, { write: (line: string) => void logs.push(line) }),
    dashboard: { store: dashboard, settings: readDashboardSettings({}) },
    secretScanning: {
      config: { keysUrl: keys.url, action },
      ...hooks,
      ...rest,
    },
  })
  const created: Harness = {
    app,
    store,
    dashboard,
    logs,
    leaked,
    findKeyCalls: () => findKeyCalls,
    close: () => {
      close()
      store.close()
    },
    alert(alert, headers) {
      const body = typeof alert === 'string' ? alert : JSON.stringify(alert)
      return request(app)
        .post(SECRET_SCANNING_PATH)
        .set(headers ?? signed(body))
        .send(body)
    },
  }
  harnesses.push(created)
  return created
}

const leakedAt = 'https://github.com/octo-org/octo-repo/blob/12345600b9cbe38a219f39a9941c9319b600c002/foo/bar.txt'
const report = (token: string, url = leakedAt) => ({ token, type: 'saiku_api_key', url, source: 'content' })
const keyWorks = async (h: Harness, key: string) =>
  (await request(h.app).get('/me/tenant').set('authorization', `Bearer ${key}`)).status === 200
const leakRows = async (h: Harness) =>
  (await h.dashboard.listActivity(tenant.tenantId, 100)).filter((event) => event.action === 'key.leaked')

describe('configuration', () => {
  it('is off until the keys URL is set, and refuses a URL it would not fetch safely', () => {
    expect(readSecretScanningConfig({})).toBeUndefined()
    expect(readSecretScanningConfig({ GITHUB_SECRET_SCANNING_KEYS_URL: '' })).toBeUndefined()
    expect(
      readSecretScanningConfig({
        GITHUB_SECRET_SCANNING_KEYS_URL: 'https://api.github.com/meta/public_keys/secret_scanning',
      }),
    ).toEqual({ keysUrl: 'https://api.github.com/meta/public_keys/secret_scanning', action: 'revoke' })
    expect(
      readSecretScanningConfig({
        GITHUB_SECRET_SCANNING_KEYS_URL: 'http://127.0.0.1:8080/keys',
        GITHUB_SECRET_SCANNING_ACTION: 'report',
      }),
    ).toEqual({ keysUrl: 'http://127.0.0.1:8080/keys', action: 'report' })
    for (const value of ['http://api.github.com/keys', 'ftp://example.com/keys', 'keys', 'https://u:p@example.com/k'])
      expect(() => readSecretScanningConfig({ GITHUB_SECRET_SCANNING_KEYS_URL: value }), value).toThrow(ConfigError)
    expect(() =>
      readSecretScanningConfig({
        GITHUB_SECRET_SCANNING_KEYS_URL: 'https://example.com/keys',
        GITHUB_SECRET_SCANNING_ACTION: 'delete',
      }),
    ).toThrow(new ConfigError('GITHUB_SECRET_SCANNING_ACTION: expected "revoke" or "report", got "delete"'))
    expect(() => readSecretScanningConfig({ GITHUB_SECRET_SCANNING_ACTION: 'report' })).toThrow(
      /set GITHUB_SECRET_SCANNING_KEYS_URL too/,
    )
  })

  it('refuses a bad option when the app is built, naming it', () => {
    const store = new SqliteKeyStore(':memory:', { watchIntervalMs: 0 })
    try {
      const build = (secretScanning: NonNullable<Parameters<typeof createApp>[0]['secretScanning']>) => () =>
        createApp({ store, logger: pino({ level: 'silent' }), settleIntervalMs: 0, secretScanning })
      const config = { keysUrl: 'http://127.0.0.1:9/keys', action: 'revoke' as const }
      expect(build({ config, perAddressPerMinute: 0 })).toThrow(
        new ConfigError('secretScanning.perAddressPerMinute: expected a positive whole number, got 0'),
      )
      expect(build({ config, maxTokens: 1.5 })).toThrow(
        new ConfigError('secretScanning.maxTokens: expected a positive whole number, got 1.5'),
      )
      expect(build({ config: { ...config, action: 'delete' as 'revoke' } })).toThrow(
        new ConfigError('secretScanning.config.action: expected "revoke" or "report", got "delete"'),
      )
    } finally {
      store.close()
    }
  })

  it('has no route without it: the path answers as any unknown path does', async () => {
    const store = new SqliteKeyStore(':memory:', { watchIntervalMs: 0 })
    const { app, close } = createApp({ store, logger: pino({ level: 'silent' }) })
    try {
      const body = JSON.stringify([report('x')])
      const alert = await request(app).post(SECRET_SCANNING_PATH).set(signed(body)).send(body)
      const unknown = await request(app).post('/no-such-route').set(signed(body)).send(body)
      expect(alert.status).toBe(unknown.status)
      expect(alert.body).toEqual(unknown.body)
      expect(keys.requests()).toBe(0)
    } finally {
      close()
      store.close()
    }
  })
})

describe('a leaked live key', () => {
  it('is revoked once, recorded in Activity with where it leaked, announced, and answered true_positive', async () => {
    const h = await harness()
    expect(keys.requests()).toBe(0) // never fetched at start-up
    const key = await createKeyManager(h.store).create(tenant.tenantId, { label: 'ci' })
    expect(await keyWorks(h, key.key)).toBe(true)

    const answer = await h.alert([report(key.key)])
    expect(answer.status).toBe(200)
    expect(answer.body).toEqual([{ token_hash: sha256(key.key), token_type: 'saiku_api_key', label: 'true_positive' }])
    expect(keys.requests()).toBe(1)
    expect((await h.store.findKey(key.keyId))!.revokedAt).not.toBeNull()
    expect(await keyWorks(h, key.key)).toBe(false)
    const rows = await leakRows(h)
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({ actorType: 'system', actor: 'GitHub secret scanning' })
    expect(rows[0]!.target).toContain(key.keyId)
    expect(rows[0]!.target).toContain(leakedAt)
    expect(rows[0]!.target).toContain(sha256(key.key).slice(0, 12))
    expect(h.leaked).toEqual([
      {
        tenantId: tenant.tenantId,
        keyId: key.keyId,
        label: 'ci',
        tokenFingerprint: sha256(key.key).slice(0, 12),
        url: leakedAt,
        source: 'content',
        revoked: true,
        at: expect.any(Date),
      },
    ])

    // The same alert again, and five more at once: the same answer, and nothing more happens.
    const replays = await Promise.all([0, 1, 2, 3, 4, 5].map(() => h.alert([report(key.key)])))
    for (const replay of replays) {
      expect(replay.status).toBe(200)
      expect(replay.body).toEqual(answer.body)
    }
    expect(await leakRows(h)).toHaveLength(1)
    expect(h.leaked).toHaveLength(1)
    expect(keys.requests()).toBe(1) // the keys are cached
  })

  it('keeps where it leaked readable: control and format characters replaced, a long URL cut', async () => {
    const h = await harness()
    const key = await createKeyManager(h.store).create(tenant.tenantId, { label: 'ci' })
    const url = `https://github.com/o/r/blob/1/a\nb\u202Ec\uD800d${'x'.repeat(1_000)}`
    expect((await h.alert([report(key.key, url)])).status).toBe(200)
    const [row] = await leakRows(h)
    expect(row!.target).toContain('https://github.com/o/r/blob/1/a?b?c?dxxx')
    expect(row!.target).not.toMatch(/[\n\u202E\uD800]/)
    expect(row!.target).toContain('x'.repeat(400) + '…')
    expect(row!.target).not.toContain('x'.repeat(500))
    expect(h.leaked[0]!.url).toBe(row!.target!.split(' found at ')[1]!.split(' (sha256')[0])
  })

  it('concurrent replays of a first alert revoke once and share one fetch of the keys', async () => {
    const h = await harness()
    const key = await createKeyManager(h.store).create(tenant.tenantId, { label: 'ci' })
    // The keys answer late, so every alert waits on the same fetch.
    const serve = keys.answer
    keys.answer = (req, res) => setTimeout(() => serve(req, res), 200)
    const answers = await Promise.all([0, 1, 2, 3, 4].map(() => h.alert([report(key.key)])))
    expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200, 200, 200])
    expect(answers.map((answer) => answer.body[0].label)).toEqual(Array(5).fill('true_positive'))
    expect(keys.requests()).toBe(1)
    expect(await leakRows(h)).toHaveLength(1)
    expect(h.leaked).toHaveLength(1)
  })

  it('a test key (sk_test_) is revoked as well: it opens the same tenant', async () => {
    const h = await harness()
    const key = await createKeyManager(h.store).create(tenant.tenantId, { label: 'staging', environment: 'test' })
    const answer = await h.alert([report(key.key)])
    expect(answer.body[0].label).toBe('true_positive')
    expect((await h.store.findKey(key.keyId))!.revokedAt).not.toBeNull()
  })

  it('report mode records and announces the leak once and leaves the key working', async () => {
    const h = await harness({ action: 'report' })
    const key = await createKeyManager(h.store).create(tenant.tenantId, { label: 'ci' })
    for (let i = 0; i < 3; i++) {
      const answer = await h.alert([report(key.key)])
      expect(answer.status).toBe(200)
      expect(answer.body[0].label).toBe('true_positive')
    }
    expect(await keyWorks(h, key.key)).toBe(true)
    const rows = await leakRows(h)
    expect(rows).toHaveLength(1)
    expect(rows[0]!.target).toContain('not revoked')
    expect(h.leaked.map((event) => event.revoked)).toEqual([false])
    // Found somewhere else: a new place to tell the tenant about.
    await h.alert([report(key.key, 'https://github.com/octo-org/other/blob/1/x.env')])
    expect(await leakRows(h)).toHaveLength(2)
  })

  it('a report already in Activity (from another process) is not recorded again after a restart', async () => {
    const h = await harness({ action: 'report' })
    const key = await createKeyManager(h.store).create(tenant.tenantId, { label: 'ci' })
    await h.alert([report(key.key)])
    // A second app on the same database: its memory is empty, Activity is not.
    const { app, close } = createApp({
      store: h.store,
      logger: pino({ level: 'silent' }),
      dashboard: { store: h.dashboard, settings: readDashboardSettings({}) },
      secretScanning: { config: { keysUrl: keys.url, action: 'report' } },
    })
    try {
      const body = JSON.stringify([report(key.key)])
      const answer = await request(app).post(SECRET_SCANNING_PATH).set(signed(body)).send(body)
      expect(answer.body[0].label).toBe('true_positive')
      expect(await leakRows(h)).toHaveLength(1)
    } finally {
      close()
    }
  })

  it('an onLeaked that rejects or throws is logged, and the key is revoked all the same', async () => {
    for (const onLeaked of [
      () => Promise.reject(new Error('outbox down')),
      () => {
        throw new Error('outbox down')
      },
    ]) {
      const h = await harness({ onLeaked })
      const key = await createKeyManager(h.store).create(tenant.tenantId, { label: 'ci' })
      const answer = await h.alert([report(key.key)])
      expect(answer.status).toBe(200)
      expect(answer.body[0].label).toBe('true_positive')
      expect((await h.store.findKey(key.keyId))!.revokedAt).not.toBeNull()
      expect(await leakRows(h)).toHaveLength(1)
      await vi.waitFor(() => expect(h.logs.join('')).toContain('leaked key announcement failed'))
    }
  })

  it('the answer waits for onLeaked, and for no longer than the store deadline when it hangs', async () => {
    let finished = 0
    const slow = await harness({
      onLeaked: async () => {
        await new Promise((resolve) => setTimeout(resolve, 50))
        finished++
      },
    })
    const key = await createKeyManager(slow.store).create(tenant.tenantId, { label: 'ci' })
    expect((await slow.alert([report(key.key)])).status).toBe(200)
    expect(finished).toBe(1)

    const hung = await harness({ onLeaked: () => new Promise<void>(() => {}), storeTimeoutMs: 200 })
    const other = await createKeyManager(hung.store).create(tenant.tenantId, { label: 'ci' })
    const answer = await hung.alert([report(other.key)])
    expect([answer.status, answer.body[0].label]).toEqual([200, 'true_positive'])
    expect((await hung.store.findKey(other.keyId))!.revokedAt).not.toBeNull()
    expect(hung.logs.join('')).toContain('leaked key announcement failed')
  })

  it('an Activity write that fails is logged; the key is revoked and announced all the same', async () => {
    const h = await harness()
    h.dashboard.recordActivity = () => Promise.reject(new Error('disk full'))
    const key = await createKeyManager(h.store).create(tenant.tenantId, { label: 'ci' })
    const answer = await h.alert([report(key.key)])
    expect([answer.status, answer.body[0].label]).toEqual([200, 'true_positive'])
    expect((await h.store.findKey(key.keyId))!.revokedAt).not.toBeNull()
    expect(h.leaked).toHaveLength(1)
    expect(h.logs.join('')).toContain('activity write failed')
  })

  it('a revocation, an Activity write or its check that hangs answers by the store deadline, and the replay goes through', async () => {
    const h = await harness({ storeTimeoutMs: 200 })
    const key = await createKeyManager(h.store).create(tenant.tenantId, { label: 'ci' })
    const revokeKey = h.store.revokeKey.bind(h.store)
    h.store.revokeKey = () => new Promise<boolean>(() => {})
    // A hang would meet supertest's own deadline instead of an answer.
    const hung = await h.alert([report(key.key)]).timeout(10_000)
    expect(hung.status).toBe(503)
    expect(hung.body.error).toBe('service_unavailable')
    expect(hung.headers['retry-after']).toBe('5')
    expect(h.leaked).toEqual([])
    // The store is back: GitHub's retry is not held behind the hung attempt.
    h.store.revokeKey = revokeKey
    const retried = await h.alert([report(key.key)]).timeout(10_000)
    expect([retried.status, retried.body[0].label]).toEqual([200, 'true_positive'])
    expect(await keyWorks(h, key.key)).toBe(false)
    expect(await leakRows(h)).toHaveLength(1)
    expect(h.leaked).toHaveLength(1)

    const quiet = await harness({ storeTimeoutMs: 200 })
    quiet.dashboard.recordActivity = () => new Promise<never>(() => {})
    const other = await createKeyManager(quiet.store).create(tenant.tenantId, { label: 'ci' })
    const answer = await quiet.alert([report(other.key)]).timeout(10_000)
    expect([answer.status, answer.body[0].label]).toEqual([200, 'true_positive'])
    expect(await keyWorks(quiet, other.key)).toBe(false)
    expect(quiet.leaked).toHaveLength(1)
    expect(quiet.logs.join('')).toContain('activity write failed')

    // Report mode cannot tell whether another process reported it: it reports (at least once), and answers.
    const reporting = await harness({ storeTimeoutMs: 200, action: 'report' })
    reporting.dashboard.hasActivity = () => new Promise<never>(() => {})
    const third = await createKeyManager(reporting.store).create(tenant.tenantId, { label: 'ci' })
    const reported = await reporting.alert([report(third.key)]).timeout(10_000)
    expect([reported.status, reported.body[0].label]).toEqual([200, 'true_positive'])
    expect(reporting.leaked).toHaveLength(1)
    expect(await keyWorks(reporting, third.key)).toBe(true)
  })

  it('a key store that fails or hangs is a JSON 503 with Retry-After, never a 500 or a false positive', async () => {
    const h = await harness({ storeTimeoutMs: 200 })
    const key = await createKeyManager(h.store).create(tenant.tenantId, { label: 'ci' })
    for (const findKey of [() => Promise.reject(new Error('connection lost')), () => new Promise<null>(() => {})]) {
      h.store.findKey = findKey
      const answer = await h.alert([report(key.key)])
      expect(answer.status).toBe(503)
      expect(answer.body.error).toBe('service_unavailable')
      expect(answer.headers['retry-after']).toBe('5')
    }
    expect(h.leaked).toEqual([])
  })

  it('never logs or stores the token, nor its whole hash outside the key table', async () => {
    const h = await harness()
    const key = await createKeyManager(h.store).create(tenant.tenantId, { label: 'ci' })
    const other = mintApiKey('live').key // well formed, not ours
    await h.alert([report(key.key), report(other), report('garbage')])
    await h.alert([report(key.key)])
    const logs = h.logs.join('')
    expect(logs).toContain('leaked key revoked')
    for (const secret of [key.key, other, sha256(key.key), sha256(other)]) expect(logs).not.toContain(secret)
    const tables = h.store.db
      .prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")
      .all()
      .map((row) => row.name)
    expect(tables).toContain('saiku_activity')
    for (const table of tables) {
      const rows = JSON.stringify(h.store.db.prepare(`SELECT * FROM "${table}"`).all())
      expect(rows, table).not.toContain(key.key)
      expect(rows, table).not.toContain(other)
      if (table !== 'saiku_api_keys') expect(rows, table).not.toContain(sha256(key.key))
    }
  })
})

describe.each([
  { name: 'SQLite', skip: false },
  { name: 'PostgreSQL', skip: postgresUrl === undefined },
])('two servers on one database ($name)', ({ name, skip }) => {
  it.skipIf(skip)(
    'revoke a key that both are told of at once once, and report a leak once, in one Activity',
    async () => {
      const schema = `saiku_leak_${randomUUID().replaceAll('-', '').slice(0, 12)}`
      const pool = name === 'PostgreSQL' ? new pg.Pool({ connectionString: postgresUrl }) : undefined
      const open = () =>
        pool === undefined
          ? new SqliteKeyStore(':memory:', { watchIntervalMs: 0 })
          : new PostgresKeyStore({ pool, schema, listen: false })
      // SQLite: one store object shared by both apps (one file, one process); PostgreSQL: a store each.
      const first = open()
      const second = pool === undefined ? first : open()
      const apps: { close: () => void }[] = []
      try {
        await first.putTenant(tenant)
        const servers = await Promise.all(
          [first, second].map(async (store) => {
            const dashboard = await openDashboardStore(store)
            const leaked: LeakedKeyEvent[] = []
            const app = (action: 'revoke' | 'report') => {
              const created = createApp({
                store,
                logger: pino({ level: 'silent' }),
                dashboard: { store: dashboard, settings: readDashboardSettings({}) },
                secretScanning: { config: { keysUrl: keys.url, action }, onLeaked: (event) => void leaked.push(event) },
              })
              apps.push(created)
              return created.app
            }
            return { dashboard, leaked, revoking: app('revoke'), reporting: app('report') }
          }),
        )
        const post = (app: Parameters<typeof request>[0], token: string) => {
          const body = JSON.stringify([report(token)])
          return request(app).post(SECRET_SCANNING_PATH).set(signed(body)).send(body)
        }
        const manager = createKeyManager(first)
        const revoked = await manager.create(tenant.tenantId, { label: 'revoked' })
        const answers = await Promise.all(
          servers.flatMap((server) => [0, 1].map(() => post(server.revoking, revoked.key))),
        )
        expect(answers.map((answer) => answer.body[0].label)).toEqual(Array(4).fill('true_positive'))
        expect((await first.findKey(revoked.keyId))!.revokedAt).not.toBeNull()
        expect(servers.flatMap((server) => server.leaked).map((event) => event.keyId)).toEqual([revoked.keyId])

        const reported = await manager.create(tenant.tenantId, { label: 'reported' })
        await post(servers[0]!.reporting, reported.key)
        await post(servers[1]!.reporting, reported.key)
        expect(servers.flatMap((server) => server.leaked).map((event) => event.keyId)).toEqual([
          revoked.keyId,
          reported.keyId,
        ])
        const rows = (await servers[1]!.dashboard.listActivity(tenant.tenantId, 100)).filter(
          (event) => event.action === 'key.leaked',
        )
        expect(rows.map((row) => row.target!.split(' ')[0])).toEqual([reported.keyId, revoked.keyId])
      } finally {
        for (const app of apps) app.close()
        if (pool === undefined) (first as SqliteKeyStore).close()
        else {
          await (first as PostgresKeyStore).close()
          await (second as PostgresKeyStore).close()
          await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
          await pool.end()
        }
      }
    },
  )
})

describe("key.leaked, written in the revocation's transaction", () => {
  const outboxRows = (h: Harness) =>
    (
      h.store.db.prepare('SELECT type, tenant_id, data FROM saiku_outbox ORDER BY rowid').all() as {
        type: string
        tenant_id: string
        data: string
      }[]
    ).map((row) => ({ type: row.type, tenantId: row.tenant_id, data: JSON.parse(row.data) as Record<string, unknown> }))

  it.each([
    { name: 'onLeaked wired too', pick: (events: ReturnType<typeof secretScanningEvents>) => events },
    {
      name: 'onLeaked absent',
      pick: ({ revokeLeaked }: ReturnType<typeof secretScanningEvents>) => ({ revokeLeaked }),
    },
  ])(
    'holds one key.leaked and one key.revoked after an alert ($name), and none more after replays',
    async ({ pick }) => {
      const h = await harness({ outbox: pick })
      const key = await createKeyManager(h.store).create(tenant.tenantId, { label: 'ci' })
      const created = outboxRows(h).length // key.created
      expect(await keyWorks(h, key.key)).toBe(true) // cached by the authenticator now

      const answer = await h.alert([report(key.key)])
      expect(answer.status).toBe(200)
      expect(answer.body[0].label).toBe('true_positive')
      // The cache heard of the revocation at once, as with the key manager.
      expect(await keyWorks(h, key.key)).toBe(false)
      const rows = outboxRows(h).slice(created)
      expect(rows.map((row) => row.type)).toEqual(['key.revoked', 'key.leaked'])
      expect(rows[1]).toEqual({
        type: 'key.leaked',
        tenantId: tenant.tenantId,
        data: {
          keyId: key.keyId,
          label: 'ci',
          tokenFingerprint: sha256(key.key).slice(0, 12),
          url: leakedAt,
          source: 'content',
          action: 'revoked',
        },
      })
      const written = JSON.stringify(outboxRows(h))
      expect(written).not.toContain(key.key)
      expect(written).not.toContain(sha256(key.key))
      expect(await leakRows(h)).toHaveLength(1)

      const replays = await Promise.all([0, 1, 2].map(() => h.alert([report(key.key)])))
      expect(replays.map((replay) => replay.status)).toEqual([200, 200, 200])
      expect(replays.map((replay) => replay.body)).toEqual([answer.body, answer.body, answer.body])
      expect(
        outboxRows(h)
          .slice(created)
          .map((row) => row.type),
      ).toEqual(['key.revoked', 'key.leaked'])
      expect(await leakRows(h)).toHaveLength(1)
    },
  )

  it('an onLeaked that hangs is not waited for: the event is already in the revocation, and written once', async () => {
    let calls = 0
    const h = await harness({
      storeTimeoutMs: 60_000,
      outbox: ({ revokeLeaked }) => ({
        revokeLeaked,
        onLeaked: () => {
          calls++
          return new Promise<void>(() => {})
        },
      }),
    })
    const key = await createKeyManager(h.store).create(tenant.tenantId, { label: 'ci' })
    const answer = await h.alert([report(key.key)])
    expect(answer.status).toBe(200)
    expect(calls).toBe(0)
    expect(outboxRows(h).filter((row) => row.type === 'key.leaked')).toHaveLength(1)
  })

  it('an event insert that fails leaves the key working and answers 503, and the retry revokes and announces once', async () => {
    const h = await harness({ outbox: (events) => events })
    const key = await createKeyManager(h.store).create(tenant.tenantId, { label: 'ci' })
    const before = outboxRows(h).length
    h.store.db.exec(`CREATE TRIGGER refuse_leaked BEFORE INSERT ON saiku_outbox WHEN NEW.type = 'key.leaked'
      BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`)

    const failed = await h.alert([report(key.key)])
    expect(failed.status).toBe(503)
    expect(failed.headers['retry-after']).toBe('5')
    expect(failed.body).toMatchObject({ error: 'service_unavailable' })
    // Rolled back with the event: neither the revocation nor its key.revoked stands, nor an Activity line.
    expect((await h.store.findKey(key.keyId))!.revokedAt).toBeNull()
    expect(await keyWorks(h, key.key)).toBe(true)
    expect(outboxRows(h)).toHaveLength(before)
    expect(await leakRows(h)).toHaveLength(0)

    // GitHub sends the alert again once the database is well.
    h.store.db.exec('DROP TRIGGER refuse_leaked')
    const retried = await h.alert([report(key.key)])
    expect(retried.status).toBe(200)
    expect(retried.body[0].label).toBe('true_positive')
    expect(await keyWorks(h, key.key)).toBe(false)
    expect(
      outboxRows(h)
        .slice(before)
        .map((row) => row.type),
    ).toEqual(['key.revoked', 'key.leaked'])
    expect(await leakRows(h)).toHaveLength(1)
  })

  it('a revocation that hangs answers 503 with Retry-After by the store deadline', async () => {
    const h = await harness({
      storeTimeoutMs: 200,
      outbox: () => ({ revokeLeaked: () => new Promise<boolean>(() => {}) }),
    })
    const key = await createKeyManager(h.store).create(tenant.tenantId, { label: 'ci' })
    const answer = await h.alert([report(key.key)])
    expect(answer.status).toBe(503)
    expect(answer.headers['retry-after']).toBe('5')
    expect(await keyWorks(h, key.key)).toBe(true)
    expect(await leakRows(h)).toHaveLength(0)
  })

  it('report mode writes key.leaked on its own, once, and no key.revoked', async () => {
    const h = await harness({ action: 'report', outbox: (events) => events })
    const key = await createKeyManager(h.store).create(tenant.tenantId, { label: 'ci' })
    const before = outboxRows(h).length
    expect((await h.alert([report(key.key)])).status).toBe(200)
    expect((await h.alert([report(key.key)])).status).toBe(200)
    const rows = outboxRows(h).slice(before)
    expect(rows.map((row) => [row.type, row.data.action])).toEqual([['key.leaked', 'reported']])
    expect(await keyWorks(h, key.key)).toBe(true)
  })
})

describe('the Activity page', () => {
  it('shows the leak by GitHub secret scanning, a hostile URL escaped', async () => {
    const h = await harness()
    const salt = randomBytes(16)
    const hash = scryptSync('the-right-password-1', salt, 32, { N: 1024, r: 8, p: 1 })
    await h.dashboard.addMember({
      memberId: randomUUID(),
      tenantId: tenant.tenantId,
      email: 'ada@acme.example',
      role: 'viewer',
      passwordHash: `scrypt$N=1024,r=8,p=1$${salt.toString('base64url')}$${hash.toString('base64url')}`,
      createdAt: new Date(),
    })
    const key = await createKeyManager(h.store).create(tenant.tenantId, { label: 'ci' })
    const hostile = 'https://github.com/o/r/blob/1/<script>alert(1)</script>.env'
    expect((await h.alert([report(key.key, hostile)])).status).toBe(200)

    const server = createServer(h.app as Parameters<typeof createServer>[1])
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`
    try {
      const jar = new Map<string, string>()
      const go = async (path: string, init: RequestInit = {}) => {
        const cookie = [...jar].map(([name, value]) => `${name}=${value}`).join('; ')
        const res = await fetch(`${origin}${path}`, {
          ...init,
          redirect: 'manual',
          headers: { ...(init.headers as Record<string, string>), cookie },
        })
        for (const line of res.headers.getSetCookie()) {
          const [name, value] = line.split(';')[0]!.split('=') as [string, string]
          jar.set(name, value)
        }
        return res
      }
      const csrf = (await (await go('/sign-in')).text()).match(/name="_csrf" value="([^"]+)"/)![1]!
      const signedIn = await go('/sign-in', {
        method: 'POST',
        headers: { origin, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ _csrf: csrf, email: 'ada@acme.example', password: 'the-right-password-1' }),
      })
      expect(signedIn.status).toBe(303)
      const page = await go('/activity')
      expect(page.status).toBe(200)
      const html = await page.text()
      expect(html).toContain('Key found leaked')
      expect(html).toContain('System (GitHub secret scanning)')
      expect(html).toContain(key.keyId)
      expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;')
      expect(html).not.toContain('<script>alert(1)')
      expect(html).not.toContain(key.key)
    } finally {
      server.closeAllConnections()
      server.close()
    }
  })
})

describe('tokens that are not ours', () => {
  it('are false positives: garbage and bad checksums cost no store read, a well-formed unknown key one', async () => {
    const h = await harness()
    const minted = mintApiKey('live').key
    const badChecksum = minted.slice(0, -1) + (minted.endsWith('A') ? 'B' : 'A')
    const before = h.findKeyCalls()
    const answer = await h.alert([report('sk_live_nope'), report(badChecksum), report('ghp_' + 'x'.repeat(36))])
    expect(answer.status).toBe(200)
    expect(answer.body).toEqual(
      ['sk_live_nope', badChecksum, 'ghp_' + 'x'.repeat(36)].map((token) => ({
        token_hash: sha256(token),
        token_type: 'saiku_api_key',
        label: 'false_positive',
      })),
    )
    expect(h.findKeyCalls()).toBe(before)
    const unknown = await h.alert([report(minted)])
    expect(unknown.body[0].label).toBe('false_positive')
    expect(h.findKeyCalls()).toBe(before + 1)
  })

  it('a key whose ID exists with another secret is a false positive and revokes nothing', async () => {
    const h = await harness()
    const key = await createKeyManager(h.store).create(tenant.tenantId, { label: 'ci' })
    // Same key ID, other secret, a checksum that holds (as an attacker would make it): a freshly minted token,
    // whose key ID the stored key is given.
    const forged = mintApiKey('live')
    h.store.db.prepare('UPDATE saiku_api_keys SET key_id = ? WHERE key_id = ?').run(forged.keyId, key.keyId)
    const token = forged.key
    const answer = await h.alert([report(token)])
    expect(answer.body[0].label).toBe('false_positive')
    expect((await h.store.findKey(forged.keyId))!.revokedAt).toBeNull()
    expect(h.leaked).toEqual([])
  })

  it('a signed flood of a thousand garbage tokens never reaches the store', async () => {
    const h = await harness()
    const before = h.findKeyCalls()
    const flood = Array.from({ length: 1_000 }, (_, i) =>
      report(`sk_live_${String(i).padStart(12, '0')}_${'a'.repeat(38)}`),
    )
    const answer = await h.alert(flood)
    expect(answer.status).toBe(200)
    expect(answer.body).toHaveLength(1_000)
    expect(new Set(answer.body.map((verdict: { label: string }) => verdict.label))).toEqual(new Set(['false_positive']))
    expect(h.findKeyCalls()).toBe(before)
  })
})

describe('the signature', () => {
  it('refuses an alert unsigned, signed wrongly, or by another key, with a JSON 401 and no store read', async () => {
    const h = await harness()
    const key = await createKeyManager(h.store).create(tenant.tenantId, { label: 'ci' })
    const body = JSON.stringify([report(key.key)])
    const before = h.findKeyCalls()
    const stranger = keyPair()
    const cases: Record<string, string>[] = [
      { 'content-type': 'application/json' },
      { ...signed(body), 'github-public-key-signature': '' },
      { ...signed(body), 'github-public-key-signature': 'not base64 at all!' },
      { ...signed(body), 'github-public-key-signature': Buffer.from('not DER').toString('base64') },
      signed(body + ' '), // signed another body
      signed(body, GITHUB_KEY_ID, stranger.privateKey),
    ]
    for (const headers of cases) {
      const refused = await h.alert(body, headers)
      expect(refused.status, JSON.stringify(headers)).toBe(401)
      expect(refused.headers['content-type']).toMatch(/^application\/json/)
      expect(refused.body.error).toBe('unauthorized')
    }
    expect(h.findKeyCalls()).toBe(before)
    expect((await h.store.findKey(key.keyId))!.revokedAt).toBeNull()
  })

  it('an unknown key identifier refetches the keys once, then is refused; a rotated-in key is accepted', async () => {
    let nowMs = 1_000_000
    const h = await harness({ now: () => nowMs })
    const body = JSON.stringify([report('garbage')])
    expect((await h.alert(body)).status).toBe(200)
    expect(keys.requests()).toBe(1)
    const rotated = keyPair()
    const refused = await h.alert(body, signed(body, 'new-key', rotated.privateKey))
    expect(refused.status).toBe(401)
    expect(keys.requests()).toBe(2) // one refetch
    // Made-up identifiers, one after another: no more fetches for a while.
    for (let i = 0; i < 5; i++)
      expect((await h.alert(body, signed(body, `made-up-${i}`, rotated.privateKey))).status).toBe(401)
    expect(keys.requests()).toBe(2)
    // GitHub publishes the new key; a minute later an alert signed with it refetches and is accepted.
    keys.document.public_keys.push({ key_identifier: 'new-key', key: rotated.pem, is_current: true })
    nowMs += 60_000
    expect((await h.alert(body, signed(body, 'new-key', rotated.privateKey))).status).toBe(200)
    expect(keys.requests()).toBe(3)
    expect((await h.alert(body)).status).toBe(200) // the old key still listed
    expect(keys.requests()).toBe(3)
  })
})

describe('fetching the keys', () => {
  const garbage = JSON.stringify([report('garbage')])

  it('a keys server that fails, redirects, sends too much or hangs: a JSON 503, and the next alert fetches again', async () => {
    // Where a redirect points: must never be asked.
    let redirectHits = 0
    const elsewhere = createServer((_req, res) => {
      redirectHits++
      res.end('{}')
    })
    elsewhere.listen(0, '127.0.0.1')
    await once(elsewhere, 'listening')
    const elsewhereUrl = `http://127.0.0.1:${(elsewhere.address() as { port: number }).port}/keys`
    try {
      const h = await harness({ fetchTimeoutMs: 2_000, maxKeysBytes: 4_096 })
      const serve = keys.answer
      const failures: [string, (req: IncomingMessage, res: ServerResponse) => void][] = [
        ['500', (_req, res) => res.writeHead(500).end()],
        ['redirect', (_req, res) => res.writeHead(302, { location: elsewhereUrl }).end()],
        ['too large', (_req, res) => res.writeHead(200).end('x'.repeat(10_000))],
        [
          'too large, unannounced',
          (_req, res) => {
            res.writeHead(200, { 'transfer-encoding': 'chunked' })
            res.write('x'.repeat(3_000))
            res.end('x'.repeat(3_000))
          },
        ],
        ['not JSON', (_req, res) => res.writeHead(200).end('<html>')],
        ['hangs', () => {}],
      ]
      for (const [name, answer] of failures) {
        keys.answer = answer
        const before = keys.requests()
        const reply = await h.alert(garbage)
        expect(reply.status, name).toBe(503)
        expect(reply.body.error, name).toBe('service_unavailable')
        expect(reply.headers['retry-after'], name).toBe('60')
        expect(keys.requests(), name).toBe(before + 1)
      }
      expect(redirectHits).toBe(0)
      keys.answer = serve
      expect((await h.alert(garbage)).status).toBe(200)
      expect(h.logs.join('')).toContain('secret scanning keys unavailable')
    } finally {
      elsewhere.closeAllConnections()
      await new Promise<void>((resolve) => elsewhere.close(() => resolve()))
    }
  })

  it('went through the guard: the fetch of the keys is a loopback connection it saw', async () => {
    const h = await harness()
    const port = new URL(keys.url).port
    const seen = connections.length
    expect((await h.alert(garbage)).status).toBe(200)
    expect(connections.slice(seen)).toContain(`127.0.0.1:${port}`)
  })
})

describe('the keyring, against a model', () => {
  it('holds what the last fetch held, fetches first on use, and refetches for an unknown identifier at most once a minute', async () => {
    const pems = ['a', 'b', 'c'].map((id) => [id, keyPair().pem] as const)
    const op = fc.oneof(
      fc.record({ kind: fc.constant('find' as const), id: fc.constantFrom('a', 'b', 'c', 'x') }),
      fc.record({ kind: fc.constant('publish' as const), id: fc.constantFrom('a', 'b', 'c'), on: fc.boolean() }),
      fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 90_000 }) }),
      fc.record({ kind: fc.constant('fail' as const), on: fc.boolean() }),
    )
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 40 }), async (ops) => {
        let nowMs = 0
        let failing = false
        const published = new Set<string>(['a'])
        let fetches = 0
        const keyring = createGithubKeyring({
          url: 'http://127.0.0.1:9/keys',
          timeoutMs: 1_000,
          maxBytes: 65_536,
          refetchIntervalMs: 60_000,
          now: () => nowMs,
          fetch: async () => {
            fetches++
            if (failing) throw new Error('down')
            const entries = pems.filter(([id]) => published.has(id))
            return JSON.stringify({
              public_keys: entries.map(([id, key]) => ({ key_identifier: id, key, is_current: true })),
            })
          },
        })
        // The model: the identifiers of the last good fetch, and when an unknown one last refetched.
        let held: Set<string> | null = null
        let refetchedAtMs = -Infinity
        let expectedFetches = 0
        for (const step of ops) {
          if (step.kind === 'wait') nowMs += step.ms
          else if (step.kind === 'fail') failing = step.on
          else if (step.kind === 'publish') {
            if (step.on) published.add(step.id)
            else published.delete(step.id)
          } else {
            let fetchNow = held === null
            if (held !== null && !held.has(step.id) && nowMs - refetchedAtMs >= 60_000) {
              fetchNow = true
              refetchedAtMs = nowMs
            }
            let expected: boolean | 'error' = held?.has(step.id) ?? false
            if (fetchNow) {
              expectedFetches++
              if (failing) expected = 'error'
              else {
                held = new Set(published)
                expected = held.has(step.id)
              }
            }
            const found = await keyring.find(step.id).then(
              (key) => key !== null,
              () => 'error' as const,
            )
            expect(found).toBe(expected)
          }
          expect(fetches).toBe(expectedFetches)
        }
      }),
      { numRuns: 150 },
    )
  })
})

describe('the body', () => {
  it('malformed JSON, a wrong shape or a bad entry: a JSON 400 naming the problem', async () => {
    const h = await harness()
    const cases: [string, RegExp][] = [
      ['[{"token": ', /not valid JSON/],
      ['{"token": "x"}', /JSON array/],
      ['[42]', /Entry 0: expected an object/],
      ['[{"type": "t"}]', /Entry 0: token must be a string/],
      [JSON.stringify([report('x'), { token: 'y', type: 7 }]), /Entry 1: type must be a string/],
      [JSON.stringify([{ ...report('x'), url: 12 }]), /Entry 0: url must be a string/],
    ]
    for (const [body, message] of cases) {
      const reply = await h.alert(body)
      expect(reply.status, body).toBe(400)
      expect(reply.body.error).toBe('invalid_request')
      expect(reply.body.message).toMatch(message)
    }
  })

  it('too many tokens, or too many bytes: a JSON 413 saying so', async () => {
    const h = await harness()
    const many = await h.alert(Array.from({ length: 1_001 }, () => ({ token: 'x', type: 't' })))
    expect(many.status).toBe(413)
    expect(many.body).toEqual({
      error: 'payload_too_large',
      message: 'An alert holds at most 1000 tokens; this one holds 1001. Send them in several alerts.',
    })
    const huge = JSON.stringify([{ token: 'x', type: 't', url: 'u'.repeat(600 * 1024) }])
    const big = await h.alert(huge)
    expect(big.status).toBe(413)
    expect(big.body.error).toBe('payload_too_large')
  })
})

describe('the budget per source address', () => {
  it('answers a JSON 429 with Retry-After past 60 requests a minute, before reading anything', async () => {
    const h = await harness()
    const body = JSON.stringify([report('garbage')])
    const statuses: number[] = []
    for (let i = 0; i < 61; i++) statuses.push((await h.alert(body, { 'content-type': 'application/json' })).status)
    expect(statuses.slice(0, 60)).toEqual(Array(60).fill(401))
    expect(statuses[60]).toBe(429)
    const refused = await h.alert(body)
    expect(refused.status).toBe(429)
    expect(refused.body.error).toBe('rate_limited')
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1)
    expect(keys.requests()).toBe(0)
    expect(h.findKeyCalls()).toBe(0)
  })

  it('other methods are a 405 with Allow', async () => {
    const h = await harness()
    const reply = await request(h.app).get(SECRET_SCANNING_PATH)
    expect(reply.status).toBe(405)
    expect(reply.headers.allow).toBe('POST')
    expect(reply.body.error).toBe('method_not_allowed')
  })
})

describe('the token pattern in the README', () => {
  const readme = readFileSync(`${exampleDir}README.md`, 'utf8')
  const documented = /The pattern to submit:\s*```(?:regex)?\n(.+)\n```/.exec(readme)?.[1]

  it('is the pattern the key format defines, and finds our keys and nothing else', () => {
    expect(documented).toBe(API_KEY_PATTERN.source)
    const pattern = new RegExp(documented!, 'g')
    for (let i = 0; i < 200; i++) {
      const { key } = mintApiKey(i % 2 === 0 ? 'live' : 'test')
      expect(`API_KEY=${key}\n`.match(pattern)).toEqual([key])
      expect(`"${key}"`.match(pattern)).toEqual([key])
    }
    const { key } = mintApiKey('live')
    const near = [
      key.replace('sk_live_', 'sk_prod_'),
      key.replace('sk_live_', 'pk_live_'),
      key.replace('sk_live_', 'SK_LIVE_'),
      key.slice(0, -1), // one short
      `${key}a`, // one long
      `x${key}`, // inside a longer word
      key.replace(/_([0-9A-Za-z]{38})$/, '-$1'),
      key.slice(0, 20) + '!' + key.slice(21),
      'sk_live_' + 'a'.repeat(51),
    ]
    for (const text of near) expect(text.match(pattern), text).toBeNull()
  })
})
