import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { mkdtempSync, rmSync } from 'node:fs'
import { isIP, connect as netConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import ipaddr from 'ipaddr.js'
import { conformanceTenant } from '@saiku/core/testing'
import { createKeyManager } from '@saiku/core'
import { SqliteKeyStore } from '@saiku/sqlite'
import type { ConnectTarget, Transport } from '../../src/webhooks/send.js'
import { sqliteWebhookSql } from '../../src/webhooks/sql.js'
import { createEndpointStore } from '../../src/webhooks/endpoints.js'

/** A request a test receiver got. */
export interface Received {
  readonly headers: IncomingMessage['headers']
  readonly body: string
  readonly path: string
}

export interface Receiver {
  readonly port: number
  readonly received: Received[]
  /** How the next requests are answered (default 200). */
  answer: (req: IncomingMessage, res: ServerResponse, received: Received) => void
  /** Resolves when `count` requests have come in. */
  waitFor(count: number): Promise<void>
  close(): Promise<void>
}

/** An HTTP server on 127.0.0.1 that records what it is sent. */
export async function startReceiver(): Promise<Receiver> {
  const received: Received[] = []
  const waiters: { count: number; resolve: () => void }[] = []
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const entry = { headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), path: req.url ?? '' }
      received.push(entry)
      for (const waiter of waiters.filter((w) => received.length >= w.count)) waiter.resolve()
      receiver.answer(req, res, entry)
    })
  })
  const receiver: Receiver = {
    port: 0,
    received,
    answer: (_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok'),
    waitFor: (count) =>
      received.length >= count ? Promise.resolve() : new Promise((resolve) => waiters.push({ count, resolve })),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  ;(receiver as { port: number }).port = (server.address() as { port: number }).port
  return receiver
}

/** Whether an address is loopback (127/8, ::1, and their IPv4-mapped forms). */
export const isLoopback = (address: string): boolean =>
  isIP(address) !== 0 && ipaddr.process(address).range() === 'loopback'

/**
 * A transport that never leaves this machine: `names` answers for test host names (anything else is an error,
 * never a real lookup), and a connection to an address that is not loopback fails the test before any packet.
 */
export function loopbackTransport(names: Record<string, readonly string[]>): Transport & {
  readonly lookups: string[]
  readonly connects: ConnectTarget[]
  readonly forbidden: ConnectTarget[]
} {
  const lookups: string[] = []
  const connects: ConnectTarget[] = []
  const forbidden: ConnectTarget[] = []
  return {
    lookups,
    connects,
    forbidden,
    lookup: async (hostname) => {
      lookups.push(hostname)
      const answers = names[hostname]
      if (answers === undefined)
        throw Object.assign(new Error(`test lookup: ${hostname} unknown`), { code: 'ENOTFOUND' })
      return answers.map((address) => ({ address, family: isIP(address) }))
    },
    connect: (target) => {
      if (!isLoopback(target.address)) {
        forbidden.push(target)
        throw new Error(`test transport: refused to connect to ${target.address}, which is not loopback`)
      }
      connects.push(target)
      return netConnect({ host: target.address, port: target.port })
    },
  }
}

/** A fake clock: `now()` reads it, `advance(ms)` moves it. */
export function fakeClock(startMs = Date.UTC(2026, 11, 6, 12)): { now: () => number; advance: (ms: number) => void } {
  let nowMs = startMs
  return { now: () => nowMs, advance: (ms) => (nowMs += ms) }
}

/** A SQLite key store with its outbox on, a tenant, and the webhook tables beside them. */
export async function sqliteSetup(now: () => number) {
  const dir = mkdtempSync(join(tmpdir(), 'saiku-webhooks-'))
  const file = join(dir, 'saiku.db')
  const store = new SqliteKeyStore(file, { watchIntervalMs: 0, outbox: true })
  const tenant = conformanceTenant()
  await store.putTenant(tenant)
  const sql = sqliteWebhookSql(store)
  const policy = { allowLoopback: true, allowPrivate: false }
  return {
    dir,
    file,
    store,
    tenant,
    sql,
    policy,
    keys: createKeyManager(store),
    endpoints: createEndpointStore(sql, policy, now),
    close: () => {
      store.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
