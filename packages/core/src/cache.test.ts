import { describe, expect, it } from 'vitest'
import { LoadingCache } from './cache.js'

function clock() {
  let now = 1_000
  return { now: () => now, advance: (ms: number) => (now += ms) }
}

describe('LoadingCache', () => {
  it('serves fresh entries and stops at the TTL, keeping them for stale reads', () => {
    const time = clock()
    const cache = new LoadingCache<string>(10, time.now)
    cache.set('a', 'A', 100)
    time.advance(99)
    expect(cache.getFresh('a')).toBe('A')
    time.advance(1)
    expect(cache.getFresh('a')).toBeUndefined()
    expect(cache.getStale('a', Infinity)).toBe('A')
  })

  it('serves a stale entry no longer than maxStaleMs past its expiry', () => {
    const time = clock()
    const cache = new LoadingCache<string>(10, time.now)
    cache.set('a', 'A', 100)
    time.advance(100 + 499)
    expect(cache.getStale('a', 500)).toBe('A')
    time.advance(1)
    expect(cache.getStale('a', 500)).toBeUndefined()
  })

  it('refreshes an entry in use once it has lived half its TTL, once, so it never expires while the loader answers', async () => {
    const time = clock()
    const cache = new LoadingCache<string>(10, time.now)
    cache.set('a', 'v0', 100)
    let loads = 0
    const loader = () => Promise.resolve(`v${++loads}`)
    const errors: unknown[] = []
    cache.refreshIfDue(
      'a',
      time.now(),
      loader,
      () => 100,
      (e) => errors.push(e),
    )
    expect(loads).toBe(0)
    time.advance(50)
    cache.refreshIfDue(
      'a',
      time.now(),
      loader,
      () => 100,
      (e) => errors.push(e),
    )
    cache.refreshIfDue(
      'a',
      time.now(),
      loader,
      () => 100,
      (e) => errors.push(e),
    )
    await Promise.resolve()
    await Promise.resolve()
    expect(loads).toBe(1)
    time.advance(60)
    expect(cache.getFresh('a')).toBe('v1')
    expect(errors).toEqual([])
  })

  it('retries a failed refresh at half the time left, and keeps the entry until it expires', async () => {
    const time = clock()
    const cache = new LoadingCache<string>(10, time.now)
    cache.set('a', 'v0', 100)
    let calls = 0
    const failing = () => {
      calls++
      return Promise.reject(new Error('down'))
    }
    const errors: unknown[] = []
    time.advance(60)
    cache.refreshIfDue(
      'a',
      time.now(),
      failing,
      () => 100,
      (e) => errors.push(e),
    )
    await new Promise((resolve) => setImmediate(resolve))
    expect(errors).toHaveLength(1)
    time.advance(10)
    cache.refreshIfDue(
      'a',
      time.now(),
      failing,
      () => 100,
      (e) => errors.push(e),
    )
    expect(calls).toBe(1)
    time.advance(10)
    cache.refreshIfDue(
      'a',
      time.now(),
      failing,
      () => 100,
      (e) => errors.push(e),
    )
    expect(calls).toBe(2)
    expect(cache.getFresh('a')).toBe('v0')
  })

  it('keeps its bound, evicting a newcomer used no more than the entry it would replace', async () => {
    const time = clock()
    // A bound of 3: a window of 1, a main part of 2.
    const cache = new LoadingCache<number>(3, time.now)
    const load = (key: string) =>
      cache.load(
        key,
        async () => 1,
        () => 10_000,
      )
    for (const key of ['a', 'b', 'c']) await load(key)
    // A hit counts as a use at most once a second.
    time.advance(1_000)
    cache.getFresh('a')
    await load('d')
    expect(cache.size).toBe(3)
    // c left the window for a main part that was full; it was used once, as b was: the one already kept stays.
    expect(cache.peek('c')).toBeUndefined()
    expect([cache.peek('a'), cache.peek('b'), cache.peek('d')]).toEqual([1, 1, 1])
    // Used twice, e leaves the window in place of b, used once.
    await load('e')
    time.advance(1_000)
    cache.getFresh('e')
    await load('f')
    expect(cache.size).toBe(3)
    expect(cache.peek('e')).toBe(1)
    expect(cache.peek('b')).toBeUndefined()
    expect(cache.peek('a')).toBe(1)
  })

  it('keeps what it counted of the keys it holds when its sketch grows with it', async () => {
    const time = clock()
    // The sketch starts at 256 entries and grows twice while this cache fills.
    const cache = new LoadingCache<string>(1_000, time.now)
    const load = (key: string) =>
      cache.load(
        key,
        async () => key,
        () => 600_000,
      )
    await load('used')
    for (let i = 0; i < 5; i++) {
      time.advance(1_000)
      cache.getFresh('used')
    }
    // Out of the window into probation, not used since: only its count protects it.
    for (let i = 0; i < 3_000; i++) await load(`once-${i}`)
    expect(cache.size).toBe(1_000)
    expect(cache.peek('used')).toBe('used')
  })

  it('collapses concurrent loads of one key into one call', async () => {
    const cache = new LoadingCache<string | null>(10, clock().now)
    let calls = 0
    let release!: (value: string) => void
    const loader = () => {
      calls++
      return new Promise<string>((resolve) => (release = resolve))
    }
    const loads = Array.from({ length: 50 }, () => cache.load('k', loader, () => 1_000))
    release('value')
    expect(await Promise.all(loads)).toEqual(Array(50).fill('value'))
    expect(calls).toBe(1)
    expect(cache.getFresh('k')).toBe('value')
  })

  it('caches misses for their own TTL', async () => {
    const time = clock()
    const cache = new LoadingCache<string | null>(10, time.now)
    await cache.load(
      'missing',
      async () => null,
      (value) => (value === null ? 50 : 1_000),
    )
    expect(cache.getFresh('missing')).toBeNull()
    time.advance(50)
    expect(cache.getFresh('missing')).toBeUndefined()
  })

  it('does not cache a failed load, and lets the next caller retry', async () => {
    const cache = new LoadingCache<string>(10, clock().now)
    await expect(
      cache.load(
        'k',
        () => Promise.reject(new Error('down')),
        () => 1_000,
      ),
    ).rejects.toThrow('down')
    expect(
      await cache.load(
        'k',
        async () => 'up',
        () => 1_000,
      ),
    ).toBe('up')
  })

  it('never writes back a load that an invalidation overtook', async () => {
    const cache = new LoadingCache<string>(10, clock().now)
    let release!: (value: string) => void
    const load = cache.load(
      'k',
      () => new Promise<string>((resolve) => (release = resolve)),
      () => 1_000,
    )
    cache.delete('k')
    release('before revocation')
    await load
    expect(cache.getFresh('k')).toBeUndefined()
  })

  it('keeps nothing with a bound of zero', () => {
    const cache = new LoadingCache<string>(0, clock().now)
    cache.set('a', 'A', 1_000)
    expect(cache.size).toBe(0)
  })
})

describe('LoadingCache onDrop', () => {
  it('sees every value that leaves: evicted, replaced, deleted, cleared', () => {
    const dropped: string[] = []
    const cache = new LoadingCache<string>(2, clock().now, { onDrop: (value) => dropped.push(value) })
    cache.set('a', 'A1', 1_000)
    cache.set('a', 'A2', 1_000)
    cache.set('b', 'B', 1_000)
    cache.set('c', 'C', 1_000)
    cache.delete('b')
    cache.clear()
    // A1 when replaced; then B, C and A2 in whatever order the policy evicted and cleared them.
    expect(dropped[0]).toBe('A1')
    expect(dropped.toSorted()).toEqual(['A1', 'A2', 'B', 'C'])
  })
})
