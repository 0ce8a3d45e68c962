import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const read = (path: string) => readFileSync(`${root}/${path}`, 'utf8')

/** The fenced code blocks of a Markdown file. */
function codeBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/```\w*\n([\s\S]*?)```/g)].map((match) => match[1]!)
}

// README snippets are the tested examples, verbatim: an edit to one without the other fails here.
describe('README snippets', () => {
  it.each([
    ['README.md', 'examples/express-basic/src/app.ts'],
    ['README.md', 'examples/koa-basic/src/app.ts'],
    ['packages/express/README.md', 'examples/express-basic/src/app.ts'],
    ['packages/koa/README.md', 'examples/koa-basic/src/app.ts'],
    ['packages/fastify/README.md', 'examples/fastify-basic/src/app.ts'],
    ['packages/fetch/README.md', 'examples/hono-basic/src/app.ts'],
    ['packages/fetch/README.md', 'packages/fetch/src/readme/bun.ts'],
    ['packages/fetch/README.md', 'packages/fetch/src/readme/deno.ts'],
    ['packages/fetch/README.md', 'packages/fetch/src/readme/next-route.ts'],
    ['packages/fetch/README.md', 'packages/fetch/src/readme/hono-cors.ts'],
    ['packages/fetch/README.md', 'packages/fetch/src/readme/any-host.ts'],
    ['packages/redis/README.md', 'packages/redis/src/readme-usage.ts'],
    ['README.md', 'examples/saiku-cloud-api/src/costs.ts'],
    ['README.md', 'packages/redis/src/readme-rolling.ts'],
    ['README.md', 'test/readme/report-only.ts'],
    ['README.md', 'test/readme/usage.ts'],
    ['README.md', 'examples/saiku-cloud-api/src/metrics.ts'],
  ])('%s quotes %s', (readme, example) => {
    expect(codeBlocks(read(readme))).toContain(read(example))
  })

  it('shows the benchmark results the last full run wrote', () => {
    const readme = read('README.md')
    const table = readme.slice(readme.indexOf('<!-- bench:start -->\n') + 21, readme.indexOf('\n<!-- bench:end -->'))
    expect(table).toBe(read('docs/benchmarks/results.md').trimEnd())
  })

  it.each(['core', 'express', 'koa', 'fastify', 'fetch', 'sqlite', 'postgres', 'redis'])(
    'packages/%s/README.md stands alone: no links to files its tarball does not ship',
    (name) => {
      const links = [...read(`packages/${name}/README.md`).matchAll(/\]\(([^)]+)\)/g)].map((match) => match[1]!)
      expect(links.filter((href) => !/^(https:\/\/|#)/.test(href))).toEqual([])
    },
  )

  it('packages/core/README.md carries the options and errors tables of the README', () => {
    // The first table under a heading: its lines up to the first line that is not a table row.
    const firstTable = (markdown: string, title: string) => {
      const lines = markdown.slice(markdown.indexOf(`## ${title}\n`)).split('\n')
      const start = lines.findIndex((line) => line.startsWith('|'))
      const end = lines.findIndex((line, index) => index > start && !line.startsWith('|'))
      return lines.slice(start, end).join('\n')
    }
    for (const title of ['Options', 'Errors']) {
      expect(firstTable(read('README.md'), title).split('\n').length).toBeGreaterThan(5)
      expect(firstTable(read('packages/core/README.md'), title)).toBe(firstTable(read('README.md'), title))
    }
  })

  it.each(['express-basic', 'fastify-basic', 'hono-basic', 'koa-basic', 'koa-minimal', 'saiku-cloud-api'])(
    'examples/%s/README.md says how to copy it',
    (example) => {
      const copy = read(`examples/${example}/README.md`).split('## Copy it\n')[1] ?? ''
      expect(copy).toContain(`npx degit saiku/saiku-auth/examples/${example} my-app`)
      expect(copy).toContain('"workspace:^"')
      expect(copy).toContain('npm start')
    },
  )

  it('gives the test command that CI runs', () => {
    expect(read('README.md')).toContain('```sh\npnpm test\n```')
    expect(read('.ci/run')).toMatch(/^pnpm test$/m)
  })
})
