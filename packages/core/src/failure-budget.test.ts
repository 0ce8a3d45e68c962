import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  FailureBudget,
  type FailureBudgetOptions,
  type Gate,
  type LookupSlot,
  type StoreCallEnd,
} from './failure-budget.js'

const MINUTE_MS = 60_000
const HOUR_MS = 3_600_000

function budget(perMinute: number, options: Partial<FailureBudgetOptions> = {}) {
  let now = 1_000_000
  const b = new FailureBudget({
    perMinute,
    perHour: perMinute * 10,
    maxClients: 100,
    trustVerifiedMs: 3_600_000,
    maxTrustedKeys: 100,
    maxLookupsInFlight: 8,
    lookupsOverBudgetPerMinute: 2,
    maxQueuedLookups: 0,
    queueWaitMs: 1_000,
    now: () => now,
    ...options,
  })
  return { b, advance: (ms: number) => (now += ms), at: () => now }
}

function deferred(): { promise: Promise<StoreCallEnd>; settle: (end: StoreCallEnd) => void } {
  let settle!: (end: StoreCallEnd) => void
  const promise = new Promise<StoreCallEnd>((resolve) => (settle = resolve))
  return { promise, settle }
}

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

function slotOf(gate: Gate | Promise<Gate>): LookupSlot {
  if (gate instanceof Promise || gate.kind !== 'slot') throw new Error(`expected a slot, got ${JSON.stringify(gate)}`)
  return gate.slot
}

describe('FailureBudget', () => {
  it('counts failures per client and answers the wait once the minute is spent, writing nothing when refused', () => {
    const { b, advance } = budget(2)
    expect(b.fail('a')).toBe(0)
    expect(b.fail('a')).toBe(0)
    expect(b.fail('a')).toBe(60_000)
    expect(b.fail('b')).toBe(0)
    advance(59_999)
    expect(b.fail('a')).toBe(1)
    advance(1)
    expect(b.fail('a')).toBe(0)
  })

  it('spends nothing for a lookup: a hundred lookups of valid keys, as many at once as the budget has room for, leave the whole budget', async () => {
    const { b } = budget(2)
    for (let wave = 0; wave < 50; wave++) {
      const calls = [deferred(), deferred()]
      const slots = calls.map((_, i) => slotOf(b.gate('a', `key${wave}-${i}`, true)))
      // Under budget, no more lookups at once than failures it has room for: the third waits.
      expect(b.gate('a', `key${wave}-2`, true)).toMatchObject({ kind: 'busy' })
      for (const [i, slot] of slots.entries()) {
        slot.holdUntil(calls[i]!.promise)
        slot.verified()
        slot.answered()
        calls[i]!.settle('found')
      }
      await flush()
    }
    expect(b.lookupsInFlight('a')).toBe(0)
    expect(b.fail('a', undefined, true)).toBe(0)
    expect(b.fail('a', undefined, true)).toBe(0)
    expect(b.fail('a')).toBeGreaterThan(0)
  })

  it('lets no more lookups of one address in flight than its cap; a timed-out one holds its place until its store call settles', async () => {
    const { b } = budget(30, { maxLookupsInFlight: 3 })
    const calls = [deferred(), deferred(), deferred()]
    for (const [i, call] of calls.entries()) {
      const slot = slotOf(b.gate('a', `key${i}`, true))
      slot.holdUntil(call.promise)
      slot.abandon()
    }
    expect(b.gate('a', 'key9', true)).toEqual({ kind: 'busy', waitMs: 1_000 })
    // Another address has places of its own.
    expect((b.gate('b', 'key8', true) as { kind: string }).kind).toBe('slot')
    calls[0]!.settle('found')
    await flush()
    expect(b.lookupsInFlight('a')).toBe(2)
    expect((b.gate('a', 'key9', true) as { kind: string }).kind).toBe('slot')
  })

  it('counts an abandoned lookup whose store call finds nothing as a failed lookup, so a slow store still closes to garbage', async () => {
    const { b } = budget(2, { lookupsOverBudgetPerMinute: 0 })
    for (let i = 0; i < 2; i++) {
      const call = deferred()
      const slot = slotOf(b.gate('a', `key${i}`, true))
      slot.holdUntil(call.promise)
      slot.abandon()
      call.settle('absent')
      await flush()
    }
    expect(b.gate('a', 'key7', true)).toMatchObject({ kind: 'over' })
  })

  it('queues a lookup past the cap and hands it the next place, then refuses past the queue with 503, never 429', async () => {
    const { b } = budget(30, { maxLookupsInFlight: 1, maxQueuedLookups: 1, queueWaitMs: 60_000 })
    const call = deferred()
    const first = slotOf(b.gate('a', 'key1', true))
    first.holdUntil(call.promise)
    first.answered()
    const queued = b.gate('a', 'key2', true)
    expect(queued).toBeInstanceOf(Promise)
    expect(b.gate('a', 'key3', true)).toEqual({ kind: 'busy', waitMs: 60_000 })
    call.settle('found')
    const gate = await queued
    expect(gate.kind).toBe('slot')
    expect(b.lookupsInFlight('a')).toBe(1)
  })

  it('answers a queued lookup 503 once it waited queueWaitMs', async () => {
    const { b } = budget(30, { maxLookupsInFlight: 1, maxQueuedLookups: 4, queueWaitMs: 20 })
    slotOf(b.gate('a', 'key1', true)).holdUntil(deferred().promise)
    await expect(b.gate('a', 'key2', true)).resolves.toEqual({ kind: 'busy', waitMs: 1_000 })
  })

  it('joins a lookup of a key ID in flight for free with a single-flight verifier, never with a verifier of the user’s', () => {
    const { b } = budget(30, { maxLookupsInFlight: 1 })
    const slot = slotOf(b.gate('a', 'key1', true))
    slot.holdUntil(deferred().promise)
    expect(b.gate('a', 'key1', true)).toEqual({ kind: 'free' })
    expect(b.gate('a', 'key1', false)).toMatchObject({ kind: 'busy' })
    // Its request gave up: the next one asks the store afresh, so it needs a place, held by the call still hanging.
    slot.abandon()
    expect(b.gate('a', 'key1', true)).toMatchObject({ kind: 'busy' })
  })

  it('over budget, lets lookupsOverBudgetPerMinute lookups through a minute across all key IDs, and gives a point back to a key that verifies', async () => {
    const { b, advance } = budget(1, { lookupsOverBudgetPerMinute: 2 })
    expect(b.fail('a', undefined, true)).toBe(0)
    const first = slotOf(b.gate('a', 'key1', true))
    const second = slotOf(b.gate('a', 'key2', true))
    expect(b.gate('a', 'key3', true)).toEqual({ kind: 'over', waitMs: 60_000 })
    first.verified()
    const third = slotOf(b.gate('a', 'key3', true))
    expect(b.gate('a', 'key4', true)).toMatchObject({ kind: 'over' })
    for (const slot of [first, second, third]) slot.release()
    advance(MINUTE_MS)
    slotOf(b.gate('a', 'key4', true))
  })

  it('never closes the store for failures it was not asked about (malformed, bad checksum, answered from the cache)', () => {
    const { b } = budget(2, { lookupsOverBudgetPerMinute: 0 })
    for (let i = 0; i < 50; i++) b.fail('a')
    expect(b.fail('a')).toBeGreaterThan(0)
    expect(b.gate('a', 'key1', true)).toMatchObject({ kind: 'slot' })
  })

  it('trusts a key ID once admitted, until the key expires or it is distrusted', () => {
    const { b, advance, at } = budget(1, { trustVerifiedMs: 10_000 })
    b.admitted('key1', 't1', at())
    b.admitted('key2', 't1', at(), at() + 5_000)
    expect(b.isTrusted('key1')).toBe(true)
    b.distrust('key1')
    expect(b.isTrusted('key1')).toBe(false)
    advance(5_000)
    expect(b.isTrusted('key2')).toBe(false)
    b.admitted('key3', 't1', at())
    advance(10_000)
    expect(b.isTrusted('key3')).toBe(false)
  })

  it('keeps each tenant’s trusted keys when another tenant admits many: the tenant holding the most gives way', () => {
    const { b, at } = budget(1, { maxTrustedKeys: 10 })
    b.admitted('victim1', 'victim', at())
    b.admitted('victim2', 'victim', at())
    for (let i = 0; i < 1_000; i++) b.admitted(`noisy${i}`, 'noisy', at())
    expect(b.trustedKeys).toBe(10)
    expect(b.isTrusted('victim1')).toBe(true)
    expect(b.isTrusted('victim2')).toBe(true)
    expect(b.isTrusted('noisy999')).toBe(true)
    expect(b.isTrusted('noisy0')).toBe(false)
  })

  it('counts at most maxClients clients, forgetting the oldest', () => {
    const { b } = budget(1, { maxClients: 2 })
    for (const client of ['a', 'b', 'c']) expect(b.fail(client)).toBe(0)
    expect(b.trackedClients).toBe(2)
    expect(b.fail('a')).toBe(0)
    expect(b.fail('c')).toBeGreaterThan(0)
  })
})

/**
 * The budget's rules, stated once more as plainly as possible, for fast-check to hold the real
 * budget to. One address's state: its failures and its failed lookups in fixed windows (a minute and
 * an hour, each starting at the first event after the last one ended), the allowance spent this minute,
 * its lookups in flight. Rules: only failures charge; a lookup holds a place until its store call
 * settles; at most CAP in flight, and under budget no more than the failures it has room for;
 * over budget ALLOWANCE lookups a minute across all key IDs, a point given back when the key verifies;
 * a trusted key ID (admitted, not revoked, not older than TRUST_MS), or one whose lookup's request still waits,
 * needs no place.
 */
const PER_MINUTE = 3
const PER_HOUR = 10
const CAP = 2
const ALLOWANCE = 2
const TRUST_MS = 600_000

interface ModelAddress {
  minuteStartMs: number
  hourStartMs: number
  failures: [minute: number, hour: number]
  lookupFailures: [minute: number, hour: number]
  allowance: number
}

class BudgetModel {
  nowMs = 1_000_000
  readonly addresses = new Map<string, ModelAddress>()
  readonly trusted = new Map<string, number>()
  readonly keysInFlight = new Map<string, number>()
  /** Store lookups in flight per address: kept apart from its windows, as the budget keeps them. */
  readonly lookupsInFlight = new Map<string, number>()

  #live(address: ModelAddress | undefined): { minute: boolean; hour: boolean } {
    if (address === undefined) return { minute: false, hour: false }
    return {
      minute: this.nowMs - address.minuteStartMs < MINUTE_MS,
      hour: this.nowMs - address.hourStartMs < HOUR_MS,
    }
  }

  #address(client: string): ModelAddress {
    let address = this.addresses.get(client)
    if (address === undefined) {
      address = {
        minuteStartMs: this.nowMs,
        hourStartMs: this.nowMs,
        failures: [0, 0],
        lookupFailures: [0, 0],
        allowance: 0,
      }
      this.addresses.set(client, address)
    }
    const live = this.#live(address)
    if (!live.hour) {
      address.hourStartMs = this.nowMs
      address.failures[1] = address.lookupFailures[1] = 0
    }
    if (!live.minute) {
      address.minuteStartMs = this.nowMs
      address.failures[0] = address.lookupFailures[0] = address.allowance = 0
    }
    return address
  }

  /** How long until the counts have room: 0 when they have. */
  #wait(client: string, counts: 'failures' | 'lookupFailures'): number {
    const address = this.addresses.get(client)
    const live = this.#live(address)
    if (address === undefined) return 0
    const [minute, hour] = address[counts]
    const minuteWait = live.minute && minute >= PER_MINUTE ? address.minuteStartMs + MINUTE_MS - this.nowMs : 0
    const hourWait = live.hour && hour >= PER_HOUR ? address.hourStartMs + HOUR_MS - this.nowMs : 0
    return Math.max(minuteWait, hourWait)
  }

  fail(client: string, viaLookup: boolean): number {
    const wait = this.#wait(client, 'failures')
    if (wait > 0 && !viaLookup) return wait
    const address = this.#address(client)
    if (viaLookup) {
      address.lookupFailures[0]++
      address.lookupFailures[1]++
    }
    if (wait > 0) return wait
    address.failures[0]++
    address.failures[1]++
    return 0
  }

  gate(
    client: string,
    keyId: string,
  ): { kind: 'free' | 'busy' } | { kind: 'over'; waitMs: number } | { kind: 'slot'; allowanceMinuteMs: number | null } {
    const trustedUntil = this.trusted.get(keyId)
    if (trustedUntil !== undefined && this.nowMs < trustedUntil) return { kind: 'free' }
    if (this.keysInFlight.has(keyId)) return { kind: 'free' }
    const existing = this.addresses.get(client)
    const inFlight = this.lookupsInFlight.get(client) ?? 0
    if (inFlight >= CAP) return { kind: 'busy' }
    const overMs = this.#wait(client, 'lookupFailures')
    if (overMs === 0) {
      const live = this.#live(existing)
      const room = Math.min(
        PER_MINUTE - (live.minute ? existing!.lookupFailures[0] : 0),
        PER_HOUR - (live.hour ? existing!.lookupFailures[1] : 0),
      )
      if (inFlight >= room) return { kind: 'busy' }
    }
    let allowanceMinuteMs: number | null = null
    // Under budget a lookup leaves the windows as they are: they start at a failure, or at a lookup over budget.
    if (overMs > 0) {
      const address = this.#address(client)
      if (address.allowance >= ALLOWANCE)
        return { kind: 'over', waitMs: Math.min(address.minuteStartMs + MINUTE_MS - this.nowMs, overMs) }
      address.allowance++
      allowanceMinuteMs = address.minuteStartMs
    }
    this.lookupsInFlight.set(client, inFlight + 1)
    this.keysInFlight.set(keyId, (this.keysInFlight.get(keyId) ?? 0) + 1)
    return { kind: 'slot', allowanceMinuteMs }
  }

  /** The request was answered or gave up: later lookups of the key ID no longer join it. */
  answered(keyId: string): void {
    const left = this.keysInFlight.get(keyId)! - 1
    if (left === 0) this.keysInFlight.delete(keyId)
    else this.keysInFlight.set(keyId, left)
  }

  /** The store call settled too: the place goes. */
  release(client: string): void {
    this.lookupsInFlight.set(client, this.lookupsInFlight.get(client)! - 1)
  }

  refund(client: string, minuteStartMs: number): void {
    const address = this.addresses.get(client)
    if (address !== undefined && address.minuteStartMs === minuteStartMs && address.allowance > 0) address.allowance--
  }
}

type Command =
  | { readonly kind: 'fail'; readonly client: number; readonly viaLookup: boolean }
  | { readonly kind: 'lookup'; readonly client: number; readonly key: number }
  | { readonly kind: 'settle'; readonly which: number; readonly how: 'verified' | 'failed' | 'timeout' | 'storeError' }
  | { readonly kind: 'timeoutEnds'; readonly which: number; readonly end: StoreCallEnd }
  | { readonly kind: 'admit'; readonly key: number }
  | { readonly kind: 'revoke'; readonly key: number }
  | { readonly kind: 'advance'; readonly ms: number }

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ kind: fc.constant('fail' as const), client: fc.nat(1), viaLookup: fc.boolean() }),
  { arbitrary: fc.record({ kind: fc.constant('lookup' as const), client: fc.nat(1), key: fc.nat(5) }), weight: 3 },
  {
    arbitrary: fc.record({
      kind: fc.constant('settle' as const),
      which: fc.nat(7),
      how: fc.constantFrom('verified' as const, 'failed' as const, 'timeout' as const, 'storeError' as const),
    }),
    weight: 3,
  },
  fc.record({
    kind: fc.constant('timeoutEnds' as const),
    which: fc.nat(7),
    end: fc.constantFrom('found' as const, 'absent' as const, 'failed' as const),
  }),
  fc.record({ kind: fc.constant('admit' as const), key: fc.nat(5) }),
  fc.record({ kind: fc.constant('revoke' as const), key: fc.nat(5) }),
  fc.record({ kind: fc.constant('advance' as const), ms: fc.constantFrom(1, 999, 20_000, 59_999, 60_000, 3_600_000) }),
)

/** A lookup that got a slot, in the real budget and in the model. */
interface Open {
  readonly client: string
  readonly keyId: string
  readonly slot: LookupSlot
  readonly call: ReturnType<typeof deferred>
  readonly allowanceMinuteMs: number | null
  /** Its request was answered 503: the store call is still to settle. */
  abandoned: boolean
}

describe('the failure budget against its reference model', () => {
  it('decides every random sequence of failures, lookups, settles, timeouts, admissions, revocations and clock steps as the model does', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(commandArb, { maxLength: 80 }), async (commands) => {
        const model = new BudgetModel()
        const real = new FailureBudget({
          perMinute: PER_MINUTE,
          perHour: PER_HOUR,
          maxClients: 100,
          trustVerifiedMs: TRUST_MS,
          maxTrustedKeys: 100,
          maxLookupsInFlight: CAP,
          lookupsOverBudgetPerMinute: ALLOWANCE,
          maxQueuedLookups: 0,
          queueWaitMs: 1_000,
          now: () => model.nowMs,
        })
        const open: Open[] = []
        const clients = ['198.51.100.1', '198.51.100.2']
        const keys = ['keyA', 'keyB', 'keyC', 'keyD', 'keyE', 'keyF']
        for (const command of commands) {
          switch (command.kind) {
            case 'fail': {
              const client = clients[command.client]!
              const realWait = real.fail(client, model.nowMs, command.viaLookup)
              expect(realWait).toBe(model.fail(client, command.viaLookup))
              break
            }
            case 'lookup': {
              const client = clients[command.client]!
              const keyId = keys[command.key]!
              const expected = model.gate(client, keyId)
              const gate = real.gate(client, keyId, true)
              expect(gate).not.toBeInstanceOf(Promise)
              const settled = gate as Gate
              if (expected.kind === 'busy') expect(settled.kind).toBe('busy')
              else if (expected.kind === 'over') expect(settled).toEqual({ kind: 'over', waitMs: expected.waitMs })
              else expect(settled.kind).toBe(expected.kind)
              if (settled.kind === 'slot') {
                const call = deferred()
                settled.slot.holdUntil(call.promise)
                const allowanceMinuteMs = expected.kind === 'slot' ? expected.allowanceMinuteMs : null
                open.push({ client, keyId, slot: settled.slot, call, allowanceMinuteMs, abandoned: false })
              }
              break
            }
            case 'settle': {
              const waiting = open.filter((candidate) => !candidate.abandoned)
              const lookup = waiting[command.which % Math.max(1, waiting.length)]
              if (lookup === undefined) break
              if (command.how === 'timeout') {
                // The request stops waiting; the store call goes on holding its place.
                lookup.slot.abandon()
                lookup.abandoned = true
                model.answered(lookup.keyId)
                break
              }
              if (command.how === 'storeError') lookup.slot.abandon()
              else lookup.slot.answered()
              if (command.how === 'verified') {
                lookup.slot.verified()
                if (lookup.allowanceMinuteMs !== null) model.refund(lookup.client, lookup.allowanceMinuteMs)
              } else if (command.how === 'failed') {
                expect(real.fail(lookup.client, model.nowMs, true)).toBe(model.fail(lookup.client, true))
              }
              open.splice(open.indexOf(lookup), 1)
              lookup.call.settle(
                command.how === 'storeError' ? 'failed' : command.how === 'verified' ? 'found' : 'absent',
              )
              await flush()
              model.answered(lookup.keyId)
              model.release(lookup.client)
              break
            }
            case 'timeoutEnds': {
              const hanging = open.filter((candidate) => candidate.abandoned)
              const lookup = hanging[command.which % Math.max(1, hanging.length)]
              if (lookup === undefined) break
              open.splice(open.indexOf(lookup), 1)
              lookup.call.settle(command.end)
              await flush()
              // What a store call that outlived its request finds out still counts: no record is a failed lookup.
              if (command.end === 'absent') model.fail(lookup.client, true)
              model.release(lookup.client)
              break
            }
            case 'admit':
              real.admitted(keys[command.key]!, 'tenant', model.nowMs)
              model.trusted.set(keys[command.key]!, model.nowMs + TRUST_MS)
              break
            case 'revoke':
              real.distrust(keys[command.key]!)
              model.trusted.delete(keys[command.key]!)
              break
            case 'advance':
              model.nowMs += command.ms
              break
          }
          for (const client of clients) {
            expect(real.lookupsInFlight(client)).toBe(model.lookupsInFlight.get(client) ?? 0)
            expect(real.lookupsInFlight(client)).toBeLessThanOrEqual(CAP)
            expect(real.waitMs(client)).toBe(modelWaitOf(model, client, 'failures'))
            expect(real.lookupWaitMs(client)).toBe(modelWaitOf(model, client, 'lookupFailures'))
          }
          for (const keyId of keys) expect(real.isTrusted(keyId)).toBe((model.trusted.get(keyId) ?? 0) > model.nowMs)
        }
      }),
      { numRuns: 400 },
    )
  })
})

/** The model's wait for a client's failures or failed lookups to have room, without counting. */
function modelWaitOf(model: BudgetModel, client: string, counts: 'failures' | 'lookupFailures'): number {
  const address = model.addresses.get(client)
  if (address === undefined) return 0
  const minuteLive = model.nowMs - address.minuteStartMs < MINUTE_MS
  const hourLive = model.nowMs - address.hourStartMs < HOUR_MS
  const minuteWait =
    minuteLive && address[counts][0] >= PER_MINUTE ? address.minuteStartMs + MINUTE_MS - model.nowMs : 0
  const hourWait = hourLive && address[counts][1] >= PER_HOUR ? address.hourStartMs + HOUR_MS - model.nowMs : 0
  return Math.max(minuteWait, hourWait)
}
