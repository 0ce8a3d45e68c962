import { describe, expect, it } from 'vitest'
import { createErrorLog, ERROR_LOG_MAX_DISTINCT, ERROR_LOG_QUIET_MS } from './error-log.js'
import { SaikuStoreError } from './errors.js'
import { mintApiKey } from './keys.js'
import { resolveOptions } from './options.js'

function logged() {
  const lines: string[] = []
  let nowMs = 1_000_000
  const log = createErrorLog({ write: (line) => lines.push(line), now: () => nowMs })
  return { lines, log, advance: (ms: number) => (nowMs += ms) }
}

describe('createErrorLog (the default onError)', () => {
  it('writes one line naming the error, its code and its cause, without a stack or a foreign message', () => {
    const { lines, log } = logged()
    const cause = Object.assign(new Error('connect ECONNREFUSED postgres://app:hunter2@db:5432'), {
      code: 'ECONNREFUSED',
    })
    log(new SaikuStoreError('key_store', 'key store failed', { cause }))
    log(Object.assign(new Error('password=hunter2\n  at x'), { code: 28 }))
    log(new Error('password=hunter2'))
    expect(lines).toHaveLength(3)
    expect(lines[0]).toMatch(
      /^saiku auth: SaikuStoreError \[ERR_SAIKU_STORE\]: key store failed \(cause: Error \[ECONNREFUSED\]\) \(/,
    )
    expect(lines[1]).toMatch(/^saiku auth: Error \[28\] \(/)
    expect(lines[2]).toMatch(/^saiku auth: Error \(/)
    for (const line of lines) {
      expect(line).not.toContain('\n')
      expect(line).not.toContain('hunter2')
      expect(line).not.toContain('error-log.test')
    }
  })

  it('logs one distinct error at most once a minute, then says how many went unlogged', () => {
    const { lines, log, advance } = logged()
    for (let i = 0; i < 50; i++) log(new SaikuStoreError('key_store', 'store down'))
    log(new SaikuStoreError('key_store', 'tier gold is unknown'))
    expect(lines).toHaveLength(2)
    advance(ERROR_LOG_QUIET_MS - 1)
    log(new SaikuStoreError('key_store', 'store down'))
    expect(lines).toHaveLength(2)
    advance(1)
    log(new SaikuStoreError('key_store', 'store down'))
    expect(lines).toHaveLength(3)
    expect(lines[2]).toContain('store down; 50 more like it unlogged')
  })

  it('masks an API key found in a message', () => {
    const { lines, log } = logged()
    const { key } = mintApiKey('live')
    log(new SaikuStoreError('key_store', `bad row for ${key}`))
    expect(lines[0]).not.toContain(key)
    expect(lines[0]).toContain('bad row for sk_…')
  })

  it('remembers a bounded number of distinct errors', () => {
    const { lines, log } = logged()
    for (let i = 0; i <= ERROR_LOG_MAX_DISTINCT; i++)
      log(new SaikuStoreError('key_store', `tenant t-${i} misconfigured`))
    expect(lines).toHaveLength(ERROR_LOG_MAX_DISTINCT + 1)
    // The oldest was forgotten to make room, so it is logged again; the newest is still quiet.
    log(new SaikuStoreError('key_store', 'tenant t-0 misconfigured'))
    log(new SaikuStoreError('key_store', `tenant t-${ERROR_LOG_MAX_DISTINCT} misconfigured`))
    expect(lines).toHaveLength(ERROR_LOG_MAX_DISTINCT + 2)
  })
})

describe('the onError option', () => {
  it('defaults to a log, one per authenticator', () => {
    expect(resolveOptions().onError).toBeTypeOf('function')
    expect(resolveOptions().onError).not.toBe(resolveOptions().onError)
  })

  it('is turned off by false or null, and kept when a function', () => {
    expect(resolveOptions({ onError: false }).onError).toBeUndefined()
    expect(resolveOptions({ onError: null }).onError).toBeUndefined()
    const hook = (): void => {}
    expect(resolveOptions({ onError: hook }).onError).toBe(hook)
  })

  it('throws at construction for anything else, naming the option and the value', () => {
    expect(() => resolveOptions({ onError: 'log' as never })).toThrow(
      'onError: expected a function, or false (or null) for no log, got "log"',
    )
    expect(() => resolveOptions({ onError: true as never })).toThrow(
      'onError: expected a function, or false (or null) for no log, got true',
    )
  })
})
