import { describe, expect, it } from 'vitest'
import { readConfig } from '../src/config.js'

// Settings that stop the start-up say so in one line; a URL that may carry a password is never shown whole.

describe('service URLs', () => {
  it('refuses a DATABASE_URL or REDIS_URL that does not parse without showing its password', () => {
    for (const [env, line] of [
      [
        { DATABASE_URL: 'postgres://saiku:hunter2secret@[bad/saiku' },
        'DATABASE_URL: expected a URL such as postgres://user:password@localhost:5432/saiku, got "postgres://…@[bad/saiku"',
      ],
      [
        { DATABASE_URL: 'postgresql://saiku:p@ss:w/rd@db.internal:5432:5433/saiku' },
        'DATABASE_URL: expected a URL such as postgres://user:password@localhost:5432/saiku, got "postgresql://…@db.internal:5432:5433/saiku"',
      ],
      [
        { REDIS_URL: 'redis://:hunter2secret@[bad' },
        'REDIS_URL: expected a redis:// or rediss:// URL such as redis://localhost:6379, got "redis://…@[bad"',
      ],
      [
        { REDIS_URL: '127.0.0.1:6379' },
        'REDIS_URL: expected a redis:// or rediss:// URL such as redis://localhost:6379, got "127.0.0.1:6379"',
      ],
    ] as const) {
      expect(() => readConfig(env), JSON.stringify(env)).toThrow(line)
      try {
        readConfig(env)
      } catch (error) {
        expect((error as Error).name).toBe('ConfigError')
        expect((error as Error).message).not.toContain('hunter2secret')
        expect((error as Error).message).not.toContain('p@ss')
      }
    }
  })

  it('keeps the URLs that parse as they were given', () => {
    const config = readConfig({
      DATABASE_URL: 'postgres://saiku:s3cret@127.0.0.1:5432/saiku?schema=tenant_a',
      REDIS_URL: 'rediss://:s3cret@cache.internal:6380/2',
    })
    expect(config.databaseUrl).toBe('postgres://saiku:s3cret@127.0.0.1:5432/saiku?schema=tenant_a')
    expect(config.redisUrl).toBe('rediss://:s3cret@cache.internal:6380/2')
    expect(readConfig({ REDIS_URL: '' }).redisUrl).toBeUndefined()
  })
})
