import { EventEmitter } from 'node:events'
import { describe, expect, it } from 'vitest'
import { createNodeBreaker, nodeBreakerFor } from './breaker.js'

class FakeRedis extends EventEmitter {
  status = 'ready'
  stream: object = {}
}

describe('createNodeBreaker on a single Redis', () => {
  it('fails fast for its pause after a failure, then lets one probe through', () => {
    const client = new FakeRedis()
    const breaker = createNodeBreaker(client, 1_000)
    breaker.failed('*', 0, client.stream)
    expect(breaker.allow('*', 999)).toBe(false)
    expect(breaker.allow('*', 1_000)).toBe(true)
    expect(breaker.allow('*', 1_001), 'a second call while the probe is out').toBe(false)
    breaker.succeeded('*')
    expect(breaker.allow('*', 1_002)).toBe(true)
  })

  it('lets calls through at once on a new connection that is ready, before its "ready" event', () => {
    const client = new FakeRedis()
    const breaker = createNodeBreaker(client, 1_000)
    breaker.failed('*', 0, client.stream)
    client.status = 'reconnecting'
    expect(breaker.allow('*', 10)).toBe(false)
    // ioredis sets the status and the new socket, and says "ready" on the next tick.
    client.stream = {}
    client.status = 'ready'
    expect(breaker.allow('*', 20)).toBe(true)
    expect(breaker.allow('*', 21), 'no probe is pending: the node is closed again').toBe(true)
  })

  it('keeps failing fast on the same connection that failed', () => {
    const client = new FakeRedis()
    const breaker = createNodeBreaker(client, 1_000)
    breaker.failed('*', 0, client.stream)
    expect(breaker.allow('*', 500)).toBe(false)
  })

  it('forgets every failure on "ready"', () => {
    const client = new FakeRedis()
    const breaker = createNodeBreaker(client, 1_000)
    breaker.failed('*', 0, client.stream)
    client.emit('ready')
    expect(breaker.allow('*', 1)).toBe(true)
  })
  it('ignores the failure of a call that outlived its connection', () => {
    const client = new FakeRedis()
    const breaker = createNodeBreaker(client, 1_000)
    const startedOn = breaker.connection()
    // The socket closed and a new one is ready before the old call's rejection arrives.
    client.stream = {}
    breaker.failed('*', 10, startedOn)
    expect(breaker.allow('*', 11)).toBe(true)
  })
})

describe('nodeBreakerFor', () => {
  it('gives every limiter on one client the same breaker, with one "ready" listener however many ask', () => {
    const client = new FakeRedis()
    const breakers = Array.from({ length: 20 }, () => nodeBreakerFor(client, 1_000))
    expect(client.listenerCount('ready')).toBe(1)
    expect(new Set(breakers).size).toBe(1)
    // A node one limiter found down is down for the others.
    breakers[0]!.failed('*', 0, client.stream)
    expect(breakers[19]!.allow('*', 500)).toBe(false)
  })

  it('keeps clients, and pauses, apart', () => {
    const [one, other] = [new FakeRedis(), new FakeRedis()]
    nodeBreakerFor(one, 1_000).failed('*', 0, one.stream)
    expect(nodeBreakerFor(other, 1_000).allow('*', 500)).toBe(true)
    expect(nodeBreakerFor(one, 2_000).allow('*', 500)).toBe(true)
    expect(nodeBreakerFor(one, 1_000).allow('*', 500)).toBe(false)
  })
})
