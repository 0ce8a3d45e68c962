import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { FrequencySketch, MAX_FREQUENCY } from './frequency-sketch.js'

describe('FrequencySketch', () => {
  it('never estimates a key below its true count since the last halving (capped), whatever else is counted', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 64 }),
        fc.array(fc.integer({ min: 0, max: 200 }), { maxLength: 400 }),
        (expected, uses) => {
          const sketch = new FrequencySketch(expected)
          const hashes = new Map<number, ReturnType<FrequencySketch['hash']>>()
          const hashOf = (n: number) => {
            let hash = hashes.get(n)
            if (hash === undefined) hashes.set(n, (hash = sketch.hash(`key-${n}`)))
            return hash
          }
          const counts = new Map<number, number>()
          // Short enough that no halving happens (it needs 10 × max(16, expected) additions).
          for (const n of uses.slice(0, 160)) {
            sketch.increment(hashOf(n))
            counts.set(n, (counts.get(n) ?? 0) + 1)
          }
          for (const [n, count] of counts) {
            const estimate = sketch.frequency(hashOf(n))
            expect(estimate).toBeGreaterThanOrEqual(Math.min(count, MAX_FREQUENCY))
            expect(estimate).toBeLessThanOrEqual(MAX_FREQUENCY)
          }
        },
      ),
      { numRuns: 300 },
    )
  })

  it('halves every count after ten additions per expected entry, so old use fades', () => {
    const sketch = new FrequencySketch(16)
    const hot = sketch.hash('hot')
    for (let i = 0; i < 12; i++) sketch.increment(hot)
    expect(sketch.frequency(hot)).toBe(12)
    // 160 additions in all: 148 more keys seen once.
    for (let i = 0; i < 148; i++) sketch.increment(sketch.hash(`once-${i}`))
    expect(sketch.frequency(hot)).toBe(6)
  })

  it('takes the memory of the entries it is sized for, whatever it counts, and grows keeping the counts of the keys kept', () => {
    const sketch = new FrequencySketch(256)
    expect(sketch.byteLength).toBe(4 * 1_024)
    const kept = sketch.hash('kept')
    const dropped = sketch.hash('dropped')
    for (let i = 0; i < 9; i++) sketch.increment(kept)
    for (let i = 0; i < 5; i++) sketch.increment(dropped)
    for (let i = 0; i < 2_000; i++) sketch.increment(sketch.hash(`k${i}`))
    expect(sketch.byteLength).toBe(4 * 1_024)
    const before = sketch.frequency(kept)
    expect(before).toBeGreaterThanOrEqual(4)
    sketch.ensureCapacity(10_000, [kept])
    expect(sketch.byteLength).toBe(4 * 65_536)
    expect(sketch.frequency(kept)).toBe(before)
    expect(sketch.frequency(dropped)).toBe(0)
    // Never shrinks.
    sketch.ensureCapacity(100)
    expect(sketch.byteLength).toBe(4 * 65_536)
  })

  it('hashes under a secret of its own, so the counters a key ID lands on cannot be known in advance', () => {
    const a = new FrequencySketch(100).hash('key-id')
    const b = new FrequencySketch(100).hash('key-id')
    expect(a).not.toEqual(b)
    expect(new FrequencySketch(100, 'fixed').hash('key-id')).toEqual(new FrequencySketch(100, 'fixed').hash('key-id'))
  })
})
