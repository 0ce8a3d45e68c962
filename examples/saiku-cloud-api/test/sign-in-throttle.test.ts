import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  minutesText,
  SIGN_IN_BUDGETS,
  SignInThrottle,
  type SignInReservation,
  type SignInScope,
} from '../src/dashboard/shared/sign-in-throttle.js'

// The sign-in budgets against a small reference model. The model keeps every
// charge as a record with the windows it was made in, and counts a window by
// the records still held in it: a failure stays, a success or an unchecked
// attempt is removed, a record of an earlier window counts nothing. Its rules:
// - an attempt needs the address's budget; naming an account, the account at
//   that address's, and the account-wide one, or instead the device's when
//   the browser holds a device cookie whose own budget has room;
// - it is admitted only when every budget it needs has room, and then charged
//   to all of them; refused, it changes nothing, and waits for the last;
// - a window starts at the first charge after the previous one ended;
// - a key whose current windows hold no charge any more once one is given
//   back is forgotten: its next charge starts new windows.

const MINUTE_MS = 60_000
const HOUR_MS = 3_600_000

interface ModelCharge {
  readonly scope: SignInScope
  readonly key: string
  readonly minuteStartMs: number
  readonly hourStartMs: number
}

class Model {
  readonly starts = new Map<string, { minuteStartMs: number; hourStartMs: number }>()
  readonly held = new Set<ModelCharge>()

  wait(scope: SignInScope, key: string, nowMs: number): number {
    const start = this.starts.get(`${scope}|${key}`)
    if (start === undefined) return 0
    const mine = [...this.held].filter((c) => c.scope === scope && c.key === key)
    const minute = mine.filter((c) => c.minuteStartMs === start.minuteStartMs).length
    const hour = mine.filter((c) => c.hourStartMs === start.hourStartMs).length
    const { perMinute, perHour } = SIGN_IN_BUDGETS[scope]
    const minuteWait =
      nowMs < start.minuteStartMs + MINUTE_MS && minute >= perMinute ? start.minuteStartMs + MINUTE_MS - nowMs : 0
    const hourWait = nowMs < start.hourStartMs + HOUR_MS && hour >= perHour ? start.hourStartMs + HOUR_MS - nowMs : 0
    return Math.max(minuteWait, hourWait)
  }

  forgetIfEmpty(scope: SignInScope, key: string): void {
    const id = `${scope}|${key}`
    const start = this.starts.get(id)
    if (start === undefined) return
    const counted = [...this.held].some(
      (c) =>
        c.scope === scope &&
        c.key === key &&
        (c.minuteStartMs === start.minuteStartMs || c.hourStartMs === start.hourStartMs),
    )
    if (!counted) this.starts.delete(id)
  }

  reserve(address: string, account: string | null, device: string | null, nowMs: number) {
    const needed: [SignInScope, string][] = [['address', address]]
    if (account !== null) {
      needed.push(['accountAddress', `${account}\n${address}`])
      const trusted = device !== null && this.wait('device', device, nowMs) === 0
      needed.push(trusted ? ['device', device] : ['account', account])
    }
    const waits = needed.map(([scope, key]) => this.wait(scope, key, nowMs))
    if (waits.some((w) => w > 0))
      return {
        admitted: false as const,
        retryAfterMs: Math.max(...waits),
        scopes: needed.filter((_, i) => waits[i]! > 0).map(([scope]) => scope),
      }
    const charges = needed.map(([scope, key]) => {
      const id = `${scope}|${key}`
      const start = this.starts.get(id) ?? { minuteStartMs: nowMs, hourStartMs: nowMs }
      const next = {
        minuteStartMs: nowMs >= start.minuteStartMs + MINUTE_MS ? nowMs : start.minuteStartMs,
        hourStartMs: nowMs >= start.hourStartMs + HOUR_MS ? nowMs : start.hourStartMs,
      }
      this.starts.set(id, next)
      const charge = { scope, key, ...next }
      this.held.add(charge)
      return charge
    })
    return { admitted: true as const, charges }
  }
}

type Op =
  | { kind: 'reserve'; address: number; account: number | null; device: number | null }
  | { kind: 'settle'; index: number; outcome: 'failure' | 'success' | 'unchecked' }
  | { kind: 'advance'; ms: number }

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('reserve' as const),
      // Few keys, so budgets fill up and windows turn over within a run.
      address: fc.nat(1),
      account: fc.option(fc.nat(1), { freq: 4 }),
      device: fc.option(fc.nat(1)),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('settle' as const),
      index: fc.nat(200),
      outcome: fc.constantFrom('failure' as const, 'success' as const, 'unchecked' as const),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('advance' as const),
      ms: fc.constantFrom(1, 999, 20_000, 59_999, 60_000, 61_000, 1_800_000, HOUR_MS),
    }),
  },
)

describe('the sign-in budgets against a reference model', () => {
  it('admit, refuse, wait and give back exactly as the model says, whatever the order of attempts and outcomes', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 100, maxLength: 400 }), (ops) => {
        let nowMs = 1_000_000
        const throttle = new SignInThrottle({ now: () => nowMs })
        const model = new Model()
        const open: { real: SignInReservation; model: ModelCharge[] }[] = []
        for (const step of ops) {
          if (step.kind === 'advance') nowMs += step.ms
          else if (step.kind === 'reserve') {
            const address = `a${step.address}`
            const account = step.account === null ? null : `m${step.account}@example.com`
            // A device cookie is signed for one account: device d belongs to account d.
            const device = step.device !== null && step.device === step.account ? `d${step.device}` : null
            const real = throttle.reserve({ address, account, device })
            const expected = model.reserve(address, account, device, nowMs)
            if (expected.admitted) {
              expect(real.admitted).toBe(true)
              if (real.admitted) open.push({ real: real.reservation, model: expected.charges })
            } else expect(real).toEqual(expected)
          } else if (open.length > 0) {
            const { real, model: charges } = open[step.index % open.length]!
            const first = !real.settled
            throttle.settle(real, step.outcome)
            if (first && step.outcome !== 'failure') {
              for (const charge of charges) model.held.delete(charge)
              for (const charge of charges) model.forgetIfEmpty(charge.scope, charge.key)
            }
          }
        }
      }),
      { numRuns: 300 },
    )
  })

  it('gives an attempt back only into the hour it was charged in', () => {
    let nowMs = 0
    const throttle = new SignInThrottle({ now: () => nowMs })
    const attempt = { address: 'a', account: 'm@example.com', device: null }
    const held = throttle.reserve(attempt)
    expect(held.admitted).toBe(true)
    nowMs += HOUR_MS
    // A new hour: twenty failures over four minutes fill it for this account at this address.
    for (let minute = 0; minute < 4; minute++) {
      for (let i = 0; i < 5; i++) {
        const verdict = throttle.reserve(attempt)
        if (!verdict.admitted) throw new Error(`refused at minute ${minute}, attempt ${i}`)
        throttle.settle(verdict.reservation, 'failure')
      }
      nowMs += 61_000
    }
    expect(throttle.reserve(attempt)).toMatchObject({ admitted: false, scopes: ['accountAddress'] })
    // The attempt of the hour before succeeds now: it frees nothing in this one.
    if (held.admitted) throttle.settle(held.reservation, 'success')
    expect(throttle.reserve(attempt)).toMatchObject({ admitted: false, scopes: ['accountAddress'] })
  })

  it('forgets what was given back, so attempts a busy server refused cannot push out the budgets still counting', () => {
    let nowMs = 0
    const throttle = new SignInThrottle({ now: () => nowMs, maxKeys: 50 })
    // The account-wide budget spent from twenty addresses.
    for (let i = 0; i < 20; i++) {
      const verdict = throttle.reserve({ address: `spent-${i}`, account: 'victim@example.com', device: null })
      if (!verdict.admitted) throw new Error(`refused at ${i}`)
      throttle.settle(verdict.reservation, 'failure')
    }
    const probe = () => throttle.reserve({ address: 'fresh', account: 'victim@example.com', device: null })
    expect(probe()).toMatchObject({ admitted: false, scopes: ['account'] })
    // A thousand attempts naming other accounts from five addresses, each given back (503: the checks were all busy).
    for (let i = 0; i < 1_000; i++) {
      const verdict = throttle.reserve({ address: `flood-${i % 5}`, account: `junk-${i}@example.com`, device: null })
      if (!verdict.admitted) throw new Error(`junk refused at ${i}`)
      throttle.settle(verdict.reservation, 'unchecked')
    }
    expect(probe()).toMatchObject({ admitted: false, scopes: ['account'] })
    nowMs += 10
    expect(probe()).toMatchObject({ admitted: false, scopes: ['account'] })
  })

  it('words a wait in whole minutes, rounded up', () => {
    expect(minutesText(1)).toBe('1 minute')
    expect(minutesText(60_000)).toBe('1 minute')
    expect(minutesText(60_001)).toBe('2 minutes')
    expect(minutesText(3_403_000)).toBe('57 minutes')
  })
})
