import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const read = (path: string) => readFileSync(`${root}/${path}`, 'utf8')

// koa-minimal is the app a newcomer reads first: Koa and the two packages it shows, nothing else.
describe('examples/koa-minimal', () => {
  it('depends on koa, @saiku/core and @saiku/koa, and tsx to start it, nothing else', () => {
    const manifest = JSON.parse(read('examples/koa-minimal/package.json')) as { dependencies: Record<string, string> }
    expect(Object.keys(manifest.dependencies).sort()).toEqual(['@saiku/core', '@saiku/koa', 'koa', 'tsx'])
  })
})

// fastify-basic is the Fastify user's first app: Fastify, the plugin and core, and tsx to start it.
describe('examples/fastify-basic', () => {
  it('depends on fastify, @saiku/core and @saiku/fastify, and tsx to start it, nothing else', () => {
    const manifest = JSON.parse(read('examples/fastify-basic/package.json')) as { dependencies: Record<string, string> }
    expect(Object.keys(manifest.dependencies).sort()).toEqual(['@saiku/core', '@saiku/fastify', 'fastify', 'tsx'])
  })

  it('starts from the repository with `pnpm example:fastify`, on the source of the packages', () => {
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts
    expect(scripts['example:fastify']).toBe(
      'NODE_OPTIONS=--conditions=@saiku/source pnpm --filter @saiku/example-fastify-basic start',
    )
  })
})
