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
    ['packages/redis/README.md', 'packages/redis/src/readme-usage.ts'],
  ])('%s quotes %s', (readme, example) => {
    expect(codeBlocks(read(readme))).toContain(read(example))
  })

  it('shows the benchmark results the last full run wrote', () => {
    const readme = read('README.md')
    const table = readme.slice(readme.indexOf('<!-- bench:start -->\n') + 21, readme.indexOf('\n<!-- bench:end -->'))
    expect(table).toBe(read('docs/benchmarks/results.md').trimEnd())
  })

  it('gives the test command that CI runs', () => {
    expect(read('README.md')).toContain('```sh\npnpm test\n```')
    expect(read('.ci/run')).toMatch(/^pnpm test$/m)
  })
})
