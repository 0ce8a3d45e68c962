import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const read = (path: string) => readFileSync(`${root}/${path}`, 'utf8')

/** Every Markdown file of the tree, tracked or about to be (git's ignore rules applied). */
const markdownFiles = () =>
  execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '*.md'], {
    cwd: root,
    encoding: 'utf8',
  })
    .split('\n')
    .filter((file) => file !== '' && !file.startsWith('.changeset/') && !file.endsWith('CHANGELOG.md'))

/** The fenced code blocks of a Markdown file. */
function codeBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/```\w*\n([\s\S]*?)```/g)].map((match) => match[1]!)
}

// README and guide snippets are the tested examples, verbatim: an edit to one without the other fails here.
describe('README snippets', () => {
  it.each([
    ['README.md', 'examples/express-basic/src/quick-start.ts'],
    ['README.md', 'examples/koa-basic/src/quick-start.ts'],
    ['README.md', 'test/readme/key-store-conformance.ts'],
    ['docs/usage.md', 'examples/express-basic/src/app.ts'],
    ['docs/usage.md', 'examples/koa-basic/src/app.ts'],
    ['docs/usage.md', 'test/readme/keys.ts'],
    ['docs/usage.md', 'test/readme/key-policy.ts'],
    ['packages/express/README.md', 'examples/express-basic/src/app.ts'],
    ['packages/koa/README.md', 'examples/koa-basic/src/app.ts'],
    ['packages/fastify/README.md', 'examples/fastify-basic/src/app.ts'],
    ['packages/fetch/README.md', 'examples/hono-basic/src/app.ts'],
    ['packages/fetch/README.md', 'packages/fetch/src/readme/bun.ts'],
    ['packages/fetch/README.md', 'packages/fetch/src/readme/deno.ts'],
    ['packages/fetch/README.md', 'packages/fetch/src/readme/next-route.ts'],
    ['packages/fetch/README.md', 'packages/fetch/src/readme/hono-cors.ts'],
    ['docs/cors.md', 'packages/fetch/src/readme/hono-cors.ts'],
    ['packages/fetch/README.md', 'packages/fetch/src/readme/any-host.ts'],
    ['packages/redis/README.md', 'packages/redis/src/readme-usage.ts'],
    ['docs/limits.md', 'examples/saiku-cloud-api/src/costs.ts'],
    ['docs/limits.md', 'packages/redis/src/readme-rolling.ts'],
    ['docs/scaling.md', 'test/readme/scale-out.ts'],
    ['docs/report-only.md', 'test/readme/report-only.ts'],
    ['docs/limits.md', 'test/readme/usage.ts'],
    ['docs/limits.md', 'test/readme/quotas.ts'],
    ['docs/metrics.md', 'examples/saiku-cloud-api/src/metrics.ts'],
    ['docs/jwt.md', 'test/readme/jwt.ts'],
  ])('%s quotes %s', (readme, example) => {
    expect(codeBlocks(read(readme))).toContain(read(example))
  })

  it('shows the benchmark results the last full run wrote', () => {
    const guide = read('docs/benchmarks.md')
    const table = guide.slice(guide.indexOf('<!-- bench:start -->\n') + 21, guide.indexOf('\n<!-- bench:end -->'))
    expect(table).toBe(read('docs/benchmarks/results.md').trimEnd())
  })

  // The front page: what a newcomer needs is on the first screen, and the rest is one click away.
  it('puts the install line and the quick-start app within the first 60 lines, and stays under 250 lines', () => {
    const lines = read('README.md').split('\n')
    expect(lines.length).toBeLessThan(250)
    const firstScreen = lines.slice(0, 60).join('\n')
    expect(firstScreen).toMatch(/^npm install @saiku\/express express\b.*pnpm add @saiku\/express express/m)
    expect(codeBlocks(firstScreen)).toContain(read('examples/express-basic/src/quick-start.ts'))
  })

  it.each(['core', 'express', 'koa', 'fastify', 'fetch', 'sqlite', 'postgres', 'redis'])(
    'packages/%s/README.md stands alone: no links to files its tarball does not ship',
    (name) => {
      const links = [...read(`packages/${name}/README.md`).matchAll(/\]\(([^)]+)\)/g)].map((match) => match[1]!)
      expect(links.filter((href) => !/^(https:\/\/|#)/.test(href))).toEqual([])
    },
  )

  // The Options and Errors tables live once, in @saiku/core's README (it stands alone on the registry page).
  it('no other Markdown file copies the Options or Errors tables; the README and the guides link to them', () => {
    const core = read('packages/core/README.md')
    /** The rows of the tables under a heading, up to the next heading of its level. */
    const rows = (title: string) => {
      const start = core.indexOf(`## ${title}\n`)
      const end = core.indexOf('\n## ', start + 1)
      return core
        .slice(start, end === -1 ? undefined : end)
        .split('\n')
        .filter((line) => line.startsWith('| ') && !line.startsWith('| --- '))
        .filter((line) => line.length > 40) // not the header rows: `| option | default | meaning |`
    }
    const tableRows = [...rows('Options'), ...rows('Errors')]
    expect(tableRows.length).toBeGreaterThan(45)
    const others = markdownFiles().filter((file) => file !== 'packages/core/README.md')
    expect(others).toEqual(expect.arrayContaining(['README.md', 'docs/limits.md', 'docs/usage.md']))
    for (const file of others) {
      const text = read(file)
      expect(
        tableRows.filter((row) => text.includes(row)),
        `${file} copies rows of packages/core/README.md's tables`,
      ).toEqual([])
    }
    const links: Array<[string, string[]]> = [
      ['README.md', ['packages/core/README.md#options', 'packages/core/README.md#errors']],
      ['docs/limits.md', ['../packages/core/README.md#options', '../packages/core/README.md#errors']],
      ['docs/usage.md', ['../packages/core/README.md#options', '../packages/core/README.md#errors']],
      ['docs/report-only.md', ['../packages/core/README.md#options']],
      ['docs/metrics.md', ['../packages/core/README.md#options']],
      ['docs/jwt.md', ['../packages/core/README.md#options']],
      ['docs/scaling.md', ['../packages/core/README.md#options']],
      ['docs/security.md', ['../packages/core/README.md#errors']],
    ]
    for (const [file, targets] of links) {
      for (const target of targets) expect(read(file), `${file} links ${target}`).toContain(`](${target})`)
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
