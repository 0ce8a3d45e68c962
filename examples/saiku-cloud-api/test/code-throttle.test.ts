import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  CODES_PER_HOUR,
  CODES_PER_SIGN_IN,
  CodeThrottle,
  type CodeReservation,
} from '../src/dashboard/shared/code-throttle.js'

// The code budget against a small model: per account, the failures of the hour that started with the first charge;
// per sign-in, its failures. Reservations settle in any order, a right code gives its charge back into its own hour.

const HOUR_MS = 3_600_000

type Op =
  | { kind: 'reserve'; member: number; attempt: number | null }
  | { kind: 'settle'; index: number; outcome: 'failure' | 'success' }
  | { kind: 'advance'; ms: number }

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('reserve' as const),
      member: fc.nat(1),
      attempt: fc.option(fc.nat(7), { freq: 2 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('settle' as const),
      index: fc.nat(100),
      outcome: fc.constantFrom('failure' as const, 'success' as const),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 900_000 }) }),
  },
)

interface ModelHour {
  startMs: number
  count: number
}

describe('the code budget', () => {
  it('admits a check only when the model has room, and never more than the budgets whatever the order of settles', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 40, maxLength: 200 }), (ops) => {
        let nowMs = 1_000_000
        const throttle = new CodeThrottle({ now: () => nowMs })
        const hours = new Map<number, ModelHour>()
        const attempts = new Map<number, number>()
        const held: { reservation: CodeReservation; member: number; attempt: number | null; hourStartMs: number }[] = []
        for (const step of ops) {
          if (step.kind === 'advance') {
            nowMs += step.ms
            continue
          }
          if (step.kind === 'settle') {
            const entry = held[step.index % Math.max(1, held.length)]
            if (entry === undefined || entry.reservation.settled) continue
            throttle.settle(entry.reservation, step.outcome)
            if (step.outcome === 'success') {
              const hour = hours.get(entry.member)
              if (hour !== undefined && hour.startMs === entry.hourStartMs && hour.count > 0) hour.count--
              // An hour with nothing left charged is forgotten: the next charge starts a new one.
              if (hour !== undefined && hour.startMs === entry.hourStartMs && hour.count === 0)
                hours.delete(entry.member)
              if (entry.attempt !== null) attempts.delete(entry.attempt)
            }
            continue
          }
          let hour = hours.get(step.member)
          if (hour !== undefined && nowMs >= hour.startMs + HOUR_MS) hour = undefined
          const hourFull = hour !== undefined && hour.count >= CODES_PER_HOUR
          const attemptFull = step.attempt !== null && (attempts.get(step.attempt) ?? 0) >= CODES_PER_SIGN_IN
          const key = `m${step.member}`
          const attemptKey = step.attempt === null ? null : `a${step.attempt}`
          const verdict = throttle.reserve(key, attemptKey)
          expect(verdict.admitted).toBe(!hourFull && !attemptFull)
          if (!verdict.admitted) {
            expect(verdict.scope).toBe(hourFull ? 'hour' : 'attempt')
            if (hourFull) expect(verdict.retryAfterMs).toBe(hour!.startMs + HOUR_MS - nowMs)
            continue
          }
          if (hour === undefined) {
            hour = { startMs: nowMs, count: 0 }
            hours.set(step.member, hour)
          }
          hour.count++
          if (step.attempt !== null) attempts.set(step.attempt, (attempts.get(step.attempt) ?? 0) + 1)
          expect(hour.count).toBeLessThanOrEqual(CODES_PER_HOUR)
          if (attemptKey !== null)
            expect(throttle.attemptsLeft(attemptKey)).toBe(CODES_PER_SIGN_IN - attempts.get(step.attempt!)!)
          held.push({
            reservation: verdict.reservation,
            member: step.member,
            attempt: step.attempt,
            hourStartMs: hour.startMs,
          })
        }
      }),
      { numRuns: 300 },
    )
  })

  it('keeps a locked account locked when many other accounts pass their checks: right codes hold no place', () => {
    let nowMs = 0
    const throttle = new CodeThrottle({ now: () => nowMs, maxKeys: 3 })
    for (let i = 0; i < CODES_PER_HOUR; i++) {
      const verdict = throttle.reserve('locked', null)
      if (!verdict.admitted) throw new Error('refused early')
      throttle.settle(verdict.reservation, 'failure')
    }
    for (let i = 0; i < 50; i++) {
      nowMs += 1_000
      const verdict = throttle.reserve(`member-${i}`, `sign-in-${i}`)
      if (!verdict.admitted) throw new Error('refused another account')
      throttle.settle(verdict.reservation, 'success')
    }
    const after = throttle.reserve('locked', null)
    expect(after.admitted).toBe(false)
    expect(!after.admitted && after.scope).toBe('hour')
  })

  it('records a refusal of one account in Activity at most once a minute', () => {
    let nowMs = 0
    const throttle = new CodeThrottle({ now: () => nowMs })
    expect(throttle.shouldRecordRefusal('a')).toBe(true)
    expect(throttle.shouldRecordRefusal('a')).toBe(false)
    expect(throttle.shouldRecordRefusal('b')).toBe(true)
    nowMs += 59_999
    expect(throttle.shouldRecordRefusal('a')).toBe(false)
    nowMs += 1
    expect(throttle.shouldRecordRefusal('a')).toBe(true)
  })
})
