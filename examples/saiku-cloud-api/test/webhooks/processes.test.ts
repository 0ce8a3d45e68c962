import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { afterEach, describe, expect, it } from 'vitest'
import { createKeyManager } from '@saiku/core'
import { PostgresKeyStore } from '@saiku/postgres'
import { SqliteKeyStore } from '@saiku/sqlite'
import { createWebhookDelivery } from '../../src/webhooks/delivery.js'
import { createEndpointStore } from '../../src/webhooks/endpoints.js'
import { openWebhookSql, sqliteWebhookSql } from '../../src/webhooks/sql.js'
import { cliJson, exampleDir, processTimeout, tempDatabase, waitFor } from '../helpers.js'
import { postgresUrl } from '../services.js'
import { loopbackTransport, startReceiver } from './support.js'

const cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

const policy = { allowLoopback: true, allowPrivate: false }

/** Starts test/webhooks/worker.ts; resolves with its exit and what it printed. */
function startWorker(databaseUrl: string, env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ['--conditions=@saiku/source', '--import', 'tsx', 'test/webhooks/worker.ts'], {
    cwd: exampleDir,
    env: { ...process.env, WORKER_DATABASE_URL: databaseUrl, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as string | null,
    stdout,
    stderr,
  }))
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  return { child, exited }
}

describe('webhook delivery across processes', () => {
  it(
    'delivers, after a restart, an event committed by the CLI in another process and one whose sender was killed mid-attempt',
    async () => {
      const receiver = await startReceiver()
      cleanups.push(() => receiver.close())
      const temp = tempDatabase()
      cleanups.push(() => temp.remove())
      const file = temp.databaseUrl.slice('sqlite:'.length)
      const setupStore = new SqliteKeyStore(file, { watchIntervalMs: 0, outbox: true })
      await setupStore.putTenant({
        tenantId: 'tenant-acme',
        tenantSlug: 'acme',
        tier: 'starter',
        connectionName: 'Acme',
        subscription: { status: 'active', trialEndsAt: null },
      })
      const endpoints = createEndpointStore(sqliteWebhookSql(setupStore), policy)
      const { endpoint } = await endpoints.add('tenant-acme', { url: `http://localhost:${receiver.port}/hook` })
      setupStore.close()

      // The CLI writes the key and its event, then exits: it never sends.
      const created = await cliJson<{ keyId: string }>(['keys', 'create', '--tenant', 'acme', '--label', 'from-cli'], {
        DATABASE_URL: temp.databaseUrl,
      })
      expect(receiver.received).toHaveLength(0)

      // A sender takes the delivery and is killed while the receiver holds the request.
      receiver.answer = () => {}
      const worker = startWorker(temp.databaseUrl)
      await waitFor(() => receiver.received.length === 1, processTimeout(1))
      worker.child.kill('SIGKILL')
      expect((await worker.exited).signal).toBe('SIGKILL')

      // A new process, once the lease ran out: the event is delivered, with the same ID.
      receiver.answer = (_req, res) => res.writeHead(200).end()
      const store = new SqliteKeyStore(file, { watchIntervalMs: 0, outbox: true })
      cleanups.push(() => store.close())
      const sql = sqliteWebhookSql(store)
      const later = createWebhookDelivery({
        sql,
        policy,
        transport: loopbackTransport({ localhost: ['127.0.0.1'] }),
        now: () => Date.now() + 71_000,
      })
      expect(await later.runOnce()).toEqual({ fannedOut: 0, attempted: 1 })
      expect(receiver.received).toHaveLength(2)
      expect(receiver.received[1]!.headers['webhook-id']).toBe(receiver.received[0]!.headers['webhook-id'])
      expect(JSON.parse(receiver.received[1]!.body)).toMatchObject({
        type: 'key.created',
        data: { keyId: created.keyId, label: 'from-cli' },
      })
      const [logged] = await createEndpointStore(sql, policy).deliveries('tenant-acme', endpoint.endpointId)
      expect(logged!.state).toBe('delivered')
      expect(logged!.attempts.map((attempt) => [attempt.attempt, attempt.status])).toEqual([[2, 200]])
    },
    processTimeout(3),
  )

  describe.skipIf(postgresUrl === undefined)('on one PostgreSQL', () => {
    it(
      'two processes deliver each attempt once',
      async () => {
        const receiver = await startReceiver()
        cleanups.push(() => receiver.close())
        const schema = `saiku_test_${randomUUID().replaceAll('-', '').slice(0, 16)}`
        const pool = new pg.Pool({ connectionString: postgresUrl, max: 4 })
        cleanups.push(async () => {
          await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
          await pool.end()
        })
        const store = new PostgresKeyStore({ pool, schema, listen: false, outbox: true })
        cleanups.push(() => store.close())
        await store.putTenant({
          tenantId: 'tenant-acme',
          tenantSlug: 'acme',
          tier: 'starter',
          connectionName: 'Acme',
          subscription: { status: 'active', trialEndsAt: null },
        })
        const sql = await openWebhookSql(store)
        await createEndpointStore(sql, policy).add('tenant-acme', { url: `http://localhost:${receiver.port}/hook` })
        const keys = createKeyManager(store)
        const events = 40
        for (let index = 0; index < events; index++) await keys.create('tenant-acme', { label: `key-${index}` })

        const url = new URL(postgresUrl!)
        url.searchParams.set('schema', schema)
        const workers = [0, 1].map(() => startWorker(url.toString(), { WORKER_BATCH_SIZE: '3' }))
        const results = await Promise.all(workers.map((worker) => worker.exited))
        for (const result of results) expect(result.code, result.stderr).toBe(0)
        const attempted = results.map((result) => (JSON.parse(result.stdout) as { attempted: number }).attempted)
        expect(attempted[0]! + attempted[1]!).toBe(events)
        expect(receiver.received).toHaveLength(events)
        expect(new Set(receiver.received.map((entry) => entry.headers['webhook-id'])).size).toBe(events)
        const { rows } = await pool.query<{ attempts: string; delivered: string }>(
          `SELECT (SELECT COUNT(*) FROM "${schema}".saiku_webhook_attempts) AS attempts,
                  (SELECT COUNT(*) FROM "${schema}".saiku_webhook_deliveries WHERE state = 'delivered') AS delivered`,
        )
        expect(rows[0]).toEqual({ attempts: String(events), delivered: String(events) })
      },
      processTimeout(2, 60_000),
    )
  })
})
