import { SaikuConfigError } from './errors.js'

// User code called by the library: every hook may be synchronous or async and may throw or reject.
// Nothing a hook does reaches the caller as a throw or as an unhandled rejection, which would end the process.

/** What a user hook answered: its value, or what it threw or rejected with. */
export type HookAnswer<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown }

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  )
}

function failedWith(error: unknown): HookAnswer<never> {
  return { ok: false, error }
}

/**
 * Calls a hook whose answer matters (`cost`, `subscription.isExempt`): what it returned or
 * threw, at once when it answered at once, else a promise of what it resolved to or rejected
 * with. Never throws; the promise never rejects.
 */
export function callHook<T>(call: () => T | PromiseLike<T>): HookAnswer<T> | Promise<HookAnswer<T>> {
  let value: T | PromiseLike<T>
  try {
    value = call()
    if (!isThenable(value)) return { ok: true, value }
    // A foreign thenable may throw from then() or call back twice: Promise.resolve tames both.
    return Promise.resolve(value).then((settled): HookAnswer<T> => ({ ok: true, value: settled }), failedWith)
  } catch (error) {
    return failedWith(error)
  }
}

/**
 * Calls an observer (`onDecision`, `onError`), whose answer is ignored: what it throws, or
 * what its promise rejects with, goes to `failed`, once. Never throws.
 */
export function notifyHook(call: () => unknown, failed: (error: unknown) => void): void {
  let value: unknown
  try {
    value = call()
  } catch (error) {
    failed(error)
    return
  }
  if (isThenable(value)) Promise.resolve(value).then(undefined, failed)
}

/** Distinct warnings remembered, each at most this long: enough to silence a repeating failure, bounded whatever fails. */
const WARNED_MAX = 64
const WARNING_MAX_CHARS = 500
const warned = new Set<string>()

/**
 * What a hook with nowhere else to report (an `onError`) threw or rejected with: one
 * `process.emitWarning` (code `SAIKU_HOOK_FAILED`) per distinct message, so a hook that
 * fails on every request is heard once. The last 64 distinct messages are remembered.
 */
export function warnHookFailed(hook: string, error: unknown): void {
  let reason: string
  try {
    reason = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
  } catch {
    reason = 'a value that cannot be shown'
  }
  const message = `Saiku auth: the ${hook} hook threw or rejected, and was ignored: ${reason}`.slice(
    0,
    WARNING_MAX_CHARS,
  )
  if (warned.has(message)) return
  if (warned.size >= WARNED_MAX) warned.delete(warned.values().next().value!)
  warned.add(message)
  process.emitWarning(message, { code: 'SAIKU_HOOK_FAILED' })
}

/** What a hook threw, as the Error that `onError` receives. */
export function asError(value: unknown): Error {
  if (value instanceof Error) return value
  try {
    return new Error(String(value))
  } catch {
    return new Error('a value that cannot be shown')
  }
}

/**
 * A background-failure hook (a store's or a change feed's `onError`), checked at construction: a
 * function to call with each failure, a no-op without one. What the hook throws or rejects with
 * becomes a process warning naming `hookName`, never a stopped store.
 */
export function backgroundErrorHook(value: unknown, hookName = 'onError'): (error: Error) => void {
  if (value !== undefined && typeof value !== 'function') throw new SaikuConfigError('onError', 'a function', value)
  const hook = value as ((error: Error) => unknown) | undefined
  return (error) => {
    if (hook !== undefined)
      notifyHook(
        () => hook(error),
        (failure) => warnHookFailed(hookName, failure),
      )
  }
}

/**
 * What a hook the core reads synchronously returned (an adapter's client address, a host's connection info).
 * A promise, from an async hook, is a misconfiguration thrown as a `SaikuConfigError` (answered with the 500);
 * its rejection is that same mistake, already reported, and never an unhandled rejection.
 */
export function syncHookValue<T>(value: T | PromiseLike<unknown>, source: string, expected: string): T {
  if (!isThenable(value)) return value
  Promise.resolve(value).then(undefined, () => {})
  throw new SaikuConfigError(source, `${expected}, returned synchronously (not a promise)`, value)
}

/** A client address a hook returned: a string or undefined, else a `SaikuConfigError` (see `syncHookValue`). */
export function clientAddressValue(value: unknown, source: string): string | undefined {
  const address = syncHookValue(value, source, 'a string or undefined')
  if (address === undefined || typeof address === 'string') return address
  throw new SaikuConfigError(source, 'a string or undefined, returned synchronously (not a promise)', address)
}
