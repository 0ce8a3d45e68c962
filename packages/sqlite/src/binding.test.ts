import { describe, expect, it, vi } from 'vitest'

// What better-sqlite3 throws at first use when its build step never ran, as under
// pnpm without an approved build (`ERR_PNPM_IGNORED_BUILDS`), and when it was built for another Node.
const failure = vi.hoisted(() => ({ error: new Error('unset') }))
vi.mock('better-sqlite3', () => ({
  default: class {
    constructor() {
      throw failure.error
    }
  },
}))

const { SqliteKeyStore } = await import('./index.js')

describe('SqliteKeyStore without a usable native binding', () => {
  it('says what pnpm and npm users run when the binding was never built', () => {
    failure.error = new Error('Could not locate the bindings file. Tried:\n → …/build/Release/better_sqlite3.node')
    let thrown: unknown
    try {
      new SqliteKeyStore(':memory:')
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(Error)
    const { message, cause } = thrown as Error
    expect(message).toContain('pnpm approve-builds')
    expect(message).toContain('allowBuilds: { better-sqlite3: true }')
    expect(message).toContain('npm rebuild better-sqlite3')
    expect(cause).toBe(failure.error)
  })

  it('says to rebuild when the binding was built for another Node', () => {
    failure.error = Object.assign(
      new Error('was compiled against a different Node.js version using NODE_MODULE_VERSION 115'),
      {
        code: 'ERR_DLOPEN_FAILED',
      },
    )
    expect(() => new SqliteKeyStore(':memory:')).toThrow(`built for another Node.js than this one (${process.version})`)
  })

  it('passes other errors on as they are', () => {
    failure.error = new Error('unable to open database file')
    expect(() => new SqliteKeyStore('/nowhere/saiku.db')).toThrow(failure.error)
  })
})
