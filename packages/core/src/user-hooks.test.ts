import { randomUUID } from 'node:crypto'
import { afterEach, describe, expect, it, vi, type MockInstance } from 'vitest'
import { asError, callHook, notifyHook, warnHookFailed } from './user-hooks.js'

/** The SAIKU_HOOK_FAILED warnings the spy saw. */
function hookWarnings(spy: MockInstance<typeof process.emitWarning>): string[] {
  return spy.mock.calls
    .filter(([, options]) => (options as { code?: string } | undefined)?.code === 'SAIKU_HOOK_FAILED')
    .map(([message]) => String(message))
}

describe('callHook', () => {
  it('answers at once for a synchronous hook, with its value or what it threw', () => {
    expect(callHook(() => 3)).toEqual({ ok: true, value: 3 })
    const error = new Error('sync bug')
    expect(
      callHook(() => {
        throw error
      }),
    ).toEqual({ ok: false, error })
  })

  it('answers with a promise that never rejects for an async hook', async () => {
    const resolved = callHook(async () => 4)
    expect(resolved).toBeInstanceOf(Promise)
    await expect(resolved).resolves.toEqual({ ok: true, value: 4 })
    const error = new Error('async bug')
    await expect(callHook(() => Promise.reject(error))).resolves.toEqual({ ok: false, error })
    // A thenable of another library, even one whose then() throws.
    const hostile = {
      then() {
        throw new Error('then bug')
      },
    }
    const answer = await callHook(() => hostile as unknown as PromiseLike<number>)
    expect(answer.ok).toBe(false)
  })
})

describe('notifyHook', () => {
  it('passes a throw or a rejection to `failed` once, and ignores what the hook returns', async () => {
    const failed = vi.fn()
    notifyHook(() => 'ignored', failed)
    notifyHook(() => {
      throw new Error('sync')
    }, failed)
    notifyHook(async () => {
      throw new Error('async')
    }, failed)
    // Hooks are user code: they may reject with anything.
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
    notifyHook(() => Promise.reject('a string'), failed)
    await new Promise((resolve) => setImmediate(resolve))
    expect(failed.mock.calls.map(([error]) => asError(error).message)).toEqual(['sync', 'async', 'a string'])
  })
})

describe('warnHookFailed', () => {
  afterEach(() => vi.restoreAllMocks())

  it('emits one warning per distinct message, naming the hook and the failure', () => {
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
    const id = randomUUID()
    for (let i = 0; i < 5; i++) warnHookFailed('onError', new Error(`sink down ${id}`))
    warnHookFailed('onError', new Error(`other ${id}`))
    warnHookFailed('saikuErrors().onError', new Error(`sink down ${id}`))
    warnHookFailed('onError', `a string ${id}`)
    expect(hookWarnings(spy)).toEqual([
      `Saiku auth: the onError hook threw or rejected, and was ignored: Error: sink down ${id}`,
      `Saiku auth: the onError hook threw or rejected, and was ignored: Error: other ${id}`,
      `Saiku auth: the saikuErrors().onError hook threw or rejected, and was ignored: Error: sink down ${id}`,
      `Saiku auth: the onError hook threw or rejected, and was ignored: a string ${id}`,
    ])
  })

  it('remembers a bounded number of messages, each of bounded length', () => {
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
    const id = randomUUID()
    const long = 'x'.repeat(2_000)
    // Far more distinct messages than are remembered: each is still said once as it comes...
    for (let i = 0; i < 1_000; i++) warnHookFailed('onError', new Error(`${id} ${i} ${long}`))
    const warnings = hookWarnings(spy)
    expect(warnings).toHaveLength(1_000)
    expect(Math.max(...warnings.map((warning) => warning.length))).toBeLessThanOrEqual(500)
    // ...and the first is forgotten (memory stays bounded), so it is said again; the latest is not.
    warnHookFailed('onError', new Error(`${id} 0 ${long}`))
    warnHookFailed('onError', new Error(`${id} 999 ${long}`))
    expect(hookWarnings(spy)).toHaveLength(1_001)
  })

  it('describes a value whose conversion to a string throws', () => {
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
    warnHookFailed(`hook ${randomUUID()}`, Object.create(null))
    expect(hookWarnings(spy)).toHaveLength(1)
    expect(hookWarnings(spy)[0]).toContain('a value that cannot be shown')
  })
})
