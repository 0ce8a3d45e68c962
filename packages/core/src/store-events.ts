import { notifyHook, warnHookFailed } from './user-hooks.js'

// An in-process event bus, keyed by store object: no import of the store's types, which
// announce through it. A change feed (`@saiku/redis`'s) carries the same events between processes.

export type KeyChange =
  | { readonly kind: 'key'; readonly keyId: string }
  | { readonly kind: 'tenant'; readonly tenantId: string }
  /** Anything may have changed (e.g. changes were missed while disconnected): forget everything cached. */
  | { readonly kind: 'all' }

// Every authenticator in this process that reads a store hears of changes made
// through any manager of that store, so a revocation takes effect at once here.
const listenersByStore = new WeakMap<object, Set<(change: KeyChange) => unknown>>()

/**
 * Subscribes to changes made through key managers of `store` in this process. Returns the unsubscribe.
 * The listener may be async; what it throws or rejects with becomes a process warning, once per distinct message.
 */
export function onKeyStoreChange(store: object, listener: (change: KeyChange) => unknown): () => void {
  let listeners = listenersByStore.get(store)
  if (listeners === undefined) listenersByStore.set(store, (listeners = new Set()))
  listeners.add(listener)
  return () => listeners.delete(listener)
}

/**
 * Tells this process's authenticators that a key or tenant changed (call after writing to the store yourself).
 * A listener that throws or rejects is a process warning: every other listener still hears, and the write stands.
 */
export function announceKeyStoreChange(store: object, change: KeyChange): void {
  for (const listener of listenersByStore.get(store) ?? []) notifyHook(() => listener(change), listenerFailed)
}

const listenerFailed = (error: unknown): void => warnHookFailed('onKeyStoreChange listener', error)

/**
 * Whether one change feed of a store hears every change now. `live: false` when it stopped hearing
 * (a lost or stalled connection): `maxAgeMs` is how long a record read meanwhile may be trusted.
 */
export type KeyStoreFeedState = { readonly live: true } | { readonly live: false; readonly maxAgeMs: number }

// The feeds of each store that are down now, with the trust each allows.
const downFeedsByStore = new WeakMap<object, Map<object, number>>()

/**
 * Tells this process's authenticators whether a change feed of `store` (`feed`: the object that
 * feeds it, one store may have several) hears every change. When one stops hearing, every cache of
 * the store is cleared and, until it hears again, what is read from the store is trusted for at most
 * its `maxAgeMs` instead of `cache.ttlMs`. When it hears again, every cache is cleared once more:
 * changes made meanwhile were not heard. Only changes of state count; repeating one does nothing.
 */
export function announceKeyStoreFeed(store: object, feed: object, state: KeyStoreFeedState): void {
  let down = downFeedsByStore.get(store)
  if (state.live) {
    if (down?.delete(feed) !== true) return
  } else {
    if (!(Number.isFinite(state.maxAgeMs) && state.maxAgeMs >= 0))
      throw new RangeError('maxAgeMs: expected a finite number ≥ 0')
    if (down === undefined) downFeedsByStore.set(store, (down = new Map<object, number>()))
    const known = down.get(feed)
    down.set(feed, state.maxAgeMs)
    // Already down: what was read since is trusted no longer than before, unless the trust shrinks.
    if (known !== undefined && known <= state.maxAgeMs) return
  }
  announceKeyStoreChange(store, { kind: 'all' })
}

/**
 * How long a record of `store` read now may be trusted while one of its change feeds is down
 * (the shortest such feed's `maxAgeMs`); undefined while every feed hears.
 */
export function keyStoreTrustCapMs(store: object): number | undefined {
  const down = downFeedsByStore.get(store)
  if (down === undefined || down.size === 0) return undefined
  let cap = Infinity
  for (const maxAgeMs of down.values()) cap = Math.min(cap, maxAgeMs)
  return cap
}

/** Runs `action` and tells whether `change` was announced for `store` meanwhile (by the store itself, say). */
export async function announcedDuring<T>(
  store: object,
  change: KeyChange,
  action: () => Promise<T>,
): Promise<{ result: T; heard: boolean }> {
  let heard = false
  const stop = onKeyStoreChange(store, (announced) => {
    if (announced.kind === change.kind && JSON.stringify(announced) === JSON.stringify(change)) heard = true
  })
  try {
    return { result: await action(), heard }
  } finally {
    stop()
  }
}
