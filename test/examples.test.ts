import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const read = (path: string) => readFileSync(`${root}/${path}`, 'utf8')

// koa-minimal carries its own copy of the reference server's route logic and store
// code, so that it can be copied out alone; the copies must not drift apart.
describe('examples/koa-minimal', () => {
  it.each(['api.ts', 'config.ts', 'limits.ts', 'logger.ts', 'store.ts', 'tenants.ts'])('src/%s is the reference server’s', (file) => {
    expect(read(`examples/koa-minimal/src/${file}`)).toBe(read(`examples/saiku-cloud-api/src/${file}`))
  })
})
