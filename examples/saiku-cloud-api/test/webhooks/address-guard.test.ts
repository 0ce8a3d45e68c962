import { afterEach, describe, expect, it } from 'vitest'
import { addressRefusal, STRICT_POLICY, webhookUrlProblem } from '../../src/webhooks/address-guard.js'
import { createWebhookDelivery } from '../../src/webhooks/delivery.js'
import { createEndpointStore } from '../../src/webhooks/endpoints.js'
import { sendDelivery } from '../../src/webhooks/send.js'
import { fakeClock, loopbackTransport, sqliteSetup, startReceiver } from './support.js'

// No test here sends a packet off this machine: names are answered by the test's lookup, and its connect
// function refuses (and records) any address that is not loopback, so a broken guard fails a test instead.

const cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

const LOOPBACK_DEV = { allowLoopback: true, allowPrivate: false }

describe('webhook URLs', () => {
  it.each([
    ['http://hooks.example/in', 'url must use https'],
    ['ftp://hooks.example/in', 'url must use https'],
    ['https://user:pass@hooks.example/in', 'url must not hold a user name or password'],
    ['https://hooks.example/in#part', 'url must not have a #fragment'],
    ['not a url', 'url must be an absolute URL'],
    [`https://hooks.example/${'a'.repeat(2100)}`, 'url must be at most 2048 characters'],
    ['https://169.254.169.254/latest/meta-data', 'url must not point at a link-local address'],
    ['https://10.0.0.1/in', 'url must not point at a private address'],
    ['https://[fd00::1]/in', 'url must not point at a private address'],
    ['https://[::ffff:10.0.0.1]/in', 'url must not point at a private address'],
    ['https://[::ffff:a9fe:a9fe]/in', 'url must not point at a link-local address'],
    ['https://127.0.0.1/in', 'url must not point at a loopback address'],
    ['https://[::1]/in', 'url must not point at a loopback address'],
    ['https://0.0.0.0/in', 'url must not point at a unspecified address'],
    ['https://100.64.0.1/in', 'url must not point at a private address'],
    ['http://localhost:8080/in', 'url must use https'],
  ])('refuses %s by default: %s', (url, problem) => {
    expect(webhookUrlProblem(url, STRICT_POLICY)).toBe(problem)
  })

  it('takes https to a name, and http only to a loopback host when the operator allows loopback', () => {
    expect(webhookUrlProblem('https://hooks.example/in?x=1', STRICT_POLICY)).toBeNull()
    expect(webhookUrlProblem('http://localhost:8080/in', LOOPBACK_DEV)).toBeNull()
    expect(webhookUrlProblem('http://127.0.0.1:8080/in', LOOPBACK_DEV)).toBeNull()
    expect(webhookUrlProblem('http://[::1]:8080/in', LOOPBACK_DEV)).toBeNull()
    expect(webhookUrlProblem('http://hooks.example/in', LOOPBACK_DEV)).toBe(
      'url must use https (http only for a loopback host)',
    )
    expect(webhookUrlProblem('https://10.0.0.1/in', LOOPBACK_DEV)).toBe('url must not point at a private address')
  })
})

describe('resolved addresses', () => {
  it.each([
    ['169.254.169.254', 'a link-local address'],
    ['fe80::1', 'a link-local address'],
    ['10.0.0.1', 'a private address'],
    ['172.16.0.1', 'a private address'],
    ['192.168.1.1', 'a private address'],
    ['100.64.0.1', 'a private address'],
    ['fd00::1', 'a private address'],
    ['fc00::1', 'a private address'],
    ['127.0.0.1', 'a loopback address'],
    ['127.8.9.10', 'a loopback address'],
    ['::1', 'a loopback address'],
    ['::ffff:127.0.0.1', 'a loopback address'],
    ['::ffff:169.254.169.254', 'a link-local address'],
    ['::ffff:192.168.0.1', 'a private address'],
    ['0.0.0.0', 'a unspecified address'],
    ['0.1.2.3', 'a unspecified address'],
    ['::', 'a unspecified address'],
    ['224.0.0.1', 'a multicast address'],
    ['ff02::1', 'a multicast address'],
    ['255.255.255.255', 'a broadcast address'],
    ['2002:a00:1::', 'a 6to4 address'],
    ['64:ff9b::a00:1', 'a rfc6052 address'],
    ['2001::1', 'a teredo address'],
    ['hooks.example', 'an address that is not an IP address'],
  ])('refuses %s: %s', (address, reason) => {
    expect(addressRefusal(address, STRICT_POLICY)).toBe(reason)
  })

  it('lets the operator allow loopback or private networks, never link-local (the metadata service)', () => {
    expect(addressRefusal('127.0.0.1', LOOPBACK_DEV)).toBeNull()
    expect(addressRefusal('10.0.0.1', LOOPBACK_DEV)).toBe('a private address')
    const everything = { allowLoopback: true, allowPrivate: true }
    expect(addressRefusal('10.0.0.1', everything)).toBeNull()
    expect(addressRefusal('fd00::1', everything)).toBeNull()
    expect(addressRefusal('169.254.169.254', everything)).toBe('a link-local address')
  })
})

describe('sending to a name that resolves inside', () => {
  const send = (transport: ReturnType<typeof loopbackTransport>, url: string, policy = STRICT_POLICY) =>
    sendDelivery(url, {}, '{}', { policy, transport, timeoutMs: 10_000, maxResponseBytes: 1024 })

  it.each([
    [['169.254.169.254'], 'a link-local address'],
    [['10.0.0.1'], 'a private address'],
    [['fd00::1'], 'a private address'],
    [['::ffff:10.0.0.1'], 'a private address'],
    [['127.0.0.1'], 'a loopback address'],
    // One answer inside is enough: the name is refused, whichever address a connection would have used.
    [['127.0.0.1', '10.0.0.1'], 'a loopback address'],
  ])('refuses a name that resolves to %j, before connecting', async (answers, reason) => {
    const transport = loopbackTransport({ 'internal.test': answers })
    expect(await send(transport, 'https://internal.test/hook')).toEqual({
      status: null,
      error: `refused: internal.test resolves to ${reason}`,
    })
    expect(transport.lookups).toEqual(['internal.test'])
    expect(transport.connects).toEqual([])
    expect(transport.forbidden).toEqual([])
  })

  it('refuses a mixed answer even when the operator allows loopback', async () => {
    const transport = loopbackTransport({ 'internal.test': ['127.0.0.1', '10.0.0.1'] })
    expect((await send(transport, 'http://localhost/hook', LOOPBACK_DEV)).error).toMatch(/^localhost unknown|ENOTFOUND/)
    expect((await send(transport, 'https://internal.test/hook', LOOPBACK_DEV)).error).toBe(
      'refused: internal.test resolves to a private address',
    )
    expect(transport.connects).toEqual([])
    expect(transport.forbidden).toEqual([])
  })

  it('connects to the address it checked, never to a name resolved again (no DNS rebinding)', async () => {
    const receiver = await startReceiver()
    cleanups.push(() => receiver.close())
    let calls = 0
    const base = loopbackTransport({})
    // First answer loopback (allowed here), then the metadata address: a rebinding name.
    const transport = {
      ...base,
      lookup: async (hostname: string) => {
        base.lookups.push(hostname)
        return [{ address: calls++ === 0 ? '127.0.0.1' : '169.254.169.254', family: 4 }]
      },
    }
    const url = `http://localhost:${receiver.port}/hook`
    expect(await send(transport, url, LOOPBACK_DEV)).toEqual({ status: 200, error: null })
    expect(base.connects).toEqual([{ address: '127.0.0.1', port: receiver.port, tls: false, servername: 'localhost' }])
    expect(receiver.received[0]!.headers.host).toBe(`localhost:${receiver.port}`)
    expect(await send(transport, url, LOOPBACK_DEV)).toEqual({
      status: null,
      error: 'refused: localhost resolves to a link-local address',
    })
    expect(base.lookups).toEqual(['localhost', 'localhost'])
    expect(base.connects).toHaveLength(1)
    expect(base.forbidden).toEqual([])
  })

  it('logs a refused attempt in the delivery log and retries it like any failure, without a packet sent', async () => {
    const clock = fakeClock()
    const db = await sqliteSetup(clock.now)
    cleanups.push(db.close)
    const endpoints = createEndpointStore(db.sql, STRICT_POLICY, clock.now)
    const { endpoint } = await endpoints.add(db.tenant.tenantId, { url: 'https://internal.test/hook' })
    const transport = loopbackTransport({ 'internal.test': ['169.254.169.254'] })
    const delivery = createWebhookDelivery({ sql: db.sql, policy: STRICT_POLICY, transport, now: clock.now })
    await db.keys.create(db.tenant.tenantId, { label: 'ssrf' })
    await delivery.runOnce()
    const [logged] = await endpoints.deliveries(db.tenant.tenantId, endpoint.endpointId)
    expect(logged!.attempts[0]).toMatchObject({
      status: null,
      error: 'refused: internal.test resolves to a link-local address',
    })
    expect(transport.connects).toEqual([])
    expect(transport.forbidden).toEqual([])
  })

  it('does not follow a redirect to the metadata address', async () => {
    const receiver = await startReceiver()
    cleanups.push(() => receiver.close())
    receiver.answer = (_req, res) => res.writeHead(307, { location: 'http://169.254.169.254/latest/meta-data' }).end()
    const transport = loopbackTransport({ localhost: ['127.0.0.1'] })
    expect(await send(transport, `http://localhost:${receiver.port}/hook`, LOOPBACK_DEV)).toEqual({
      status: 307,
      error: 'redirect not followed',
    })
    expect(transport.lookups).toEqual(['localhost'])
    expect(transport.forbidden).toEqual([])
  })
})
