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
