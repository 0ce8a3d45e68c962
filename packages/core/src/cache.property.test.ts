import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { LoadingCache } from './cache.js'

const KEYS = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']

type Op =
  | { readonly kind: 'set'; readonly key: string; readonly ttlMs: number }
  | { readonly kind: 'load'; readonly key: string; readonly ttlMs: number; readonly absent: boolean }
  | { readonly kind: 'getFresh'; readonly key: string }
  | { readonly kind: 'getStale'; readonly key: string; readonly maxStaleMs: number }
  | { readonly kind: 'refresh'; readonly key: string; readonly ttlMs: number }
  | { readonly kind: 'advance'; readonly ms: number }
  | { readonly kind: 'delete'; readonly key: string }
  | { readonly kind: 'clear' }

const key = fc.constantFrom(...KEYS)
const ttlMs = fc.integer({ min: 1, max: 2_000 })
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('set' as const), key, ttlMs }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('load' as const), key, ttlMs, absent: fc.boolean() }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('getFresh' as const), key }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('getStale' as const),
      key,
      maxStaleMs: fc.integer({ min: 0, max: 1_000 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('refresh' as const), key, ttlMs }) },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 1_500 }) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), key }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'clear' as const }) },
)

const settle = () => new Promise((resolve) => setImmediate(resolve))

/**
 * The model: the last value written under each key and when it expires; what
 * the cache may hold of a key is that value or nothing (which one, the admission
 * policy decides).
 */
describe('LoadingCache against a model', () => {
  it('never holds more than its bound, never answers an expired, replaced or deleted value, and drops each value once', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 6 }), fc.array(op, { maxLength: 120 }), async (maxEntries, ops) => {
        let now = 1_000
        const dropped: string[] = []
        const cache = new LoadingCache<string | null>(maxEntries, () => now, {
          onDrop: (value) => {
            if (value !== null) dropped.push(value)
          },
          hitCounts: (value) => value !== null,
        })
        const model = new Map<string, { value: string | null; expiresAtMs: number }>()
        const written: string[] = []
        let serial = 0
        const fresh = (): string => {
          const value = `v${serial++}`
          written.push(value)
          return value
        }

        for (const step of ops) {
          switch (step.kind) {
            case 'set': {
              const value = fresh()
              cache.set(step.key, value, step.ttlMs)
              model.set(step.key, { value, expiresAtMs: now + step.ttlMs })
              break
            }
            case 'load': {
              const value = step.absent ? null : fresh()
              const loaded = await cache.load(
                step.key,
                async () => value,
                () => step.ttlMs,
              )
              expect(loaded).toBe(value)
              model.set(step.key, { value, expiresAtMs: now + step.ttlMs })
              break
            }
            case 'getFresh': {
              const got = cache.getFresh(step.key, now)
              const known = model.get(step.key)
              if (got !== undefined) {
                expect(known).toBeDefined()
                expect(got).toBe(known!.value)
                expect(now).toBeLessThan(known!.expiresAtMs)
              }
              break
            }
            case 'getStale': {
              const got = cache.getStale(step.key, step.maxStaleMs, now)
              const known = model.get(step.key)
              if (got !== undefined) {
                expect(got).toBe(known!.value)
                expect(now).toBeLessThan(known!.expiresAtMs + step.maxStaleMs)
              }
              break
            }
            case 'refresh': {
              const value = fresh()
              const errors: unknown[] = []
              cache.refreshIfDue(
                step.key,
                now,
                async () => value,
                () => step.ttlMs,
                (error) => errors.push(error),
              )
              await settle()
              expect(errors).toEqual([])
              // Reloaded when it was due: then the new value is what the key holds, if anything.
              if (cache.peek(step.key) === value) model.set(step.key, { value, expiresAtMs: now + step.ttlMs })
              else written.pop()
              break
            }
            case 'advance':
              now += step.ms
              break
            case 'delete':
              cache.delete(step.key)
              model.delete(step.key)
              break
            case 'clear':
              cache.clear()
              model.clear()
              break
          }
          expect(cache.size).toBeLessThanOrEqual(maxEntries)
          let held = 0
          for (const k of KEYS) {
            const peeked = cache.peek(k)
            if (peeked === undefined) continue
            held++
            expect(peeked).toBe(model.get(k)?.value)
          }
          expect(held).toBe(cache.size)
        }

        cache.clear()
        // Every value written left exactly once: replaced, evicted, deleted or cleared.
        expect(dropped.toSorted()).toEqual(written.toSorted())
      }),
      { numRuns: 1_000 },
    )
  })

  it('keeps a key in steady use whatever number of keys used once pass through', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 3, max: 300 }),
        fc.integer({ min: 0, max: 3 }),
        fc.double({ min: 0.01, max: 0.5, noNaN: true }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 0, max: 50 }),
        async (maxEntries, fillRounds, useEvery, rounds, stepMs) => {
          let now = 1_000
          const cache = new LoadingCache<string>(maxEntries, () => now)
          let serial = 0
          const oneShot = () =>
            cache.load(
              `one-shot-${serial++}`,
              async () => 'x',
              () => 600_000,
            )
          // Whatever came before: the cache full of keys used once, any number of times over.
          for (let i = 0; i < fillRounds * maxEntries; i++) await oneShot()
          let steadyLoads = 0
          const steady = () => {
            if (cache.getFresh('steady', now) !== undefined) return
            steadyLoads++
            return cache.load(
              'steady',
              async () => 'steady',
              () => 600_000,
            )
          }
          // Presented a few times a second apart, as a key in use is (a hit counts at most once a second).
          for (let i = 0; i < 4; i++) {
            await steady()
            now += 1_000
          }
          expect(steadyLoads).toBe(1)
          // Then used at least once every `useEvery × maxEntries` keys presented once (at least once every 1, at most every half the bound).
          const gap = Math.max(1, Math.floor(useEvery * maxEntries))
          for (let i = 0; i < rounds * maxEntries; i++) {
            await oneShot()
            if (i % gap === 0) await steady()
            now += stepMs
          }
          expect(steadyLoads).toBe(1)
          expect(cache.size).toBeLessThanOrEqual(maxEntries)
        },
      ),
      { numRuns: 200 },
    )
  })
})
