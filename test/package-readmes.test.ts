import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

// Each package README stands alone on its registry page and says what is true of the
// package: the Node versions of its `engines`, links to the repository by absolute URL
// (from its `repository` field), the reference tables written once (in @saiku/core's
// README) and linked from the others, and the KeyStore contract in @saiku/core's.

const root = fileURLToPath(new URL('..', import.meta.url))
const read = (path: string) => readFileSync(`${root}/${path}`, 'utf8')

interface Manifest {
  name: string
  engines?: { node?: string }
  repository?: { type?: string; url?: string; directory?: string }
}

const packages = readdirSync(`${root}/packages`, { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name)
  .sort()
const manifest = (name: string) => JSON.parse(read(`packages/${name}/package.json`)) as Manifest
const readme = (name: string) => read(`packages/${name}/README.md`)
const REPOSITORY = 'https://github.com/saiku/saiku-auth'

/** The text of a README section: from its heading to the next heading of the same level or above. */
function section(markdown: string, heading: string): string {
  const level = /^#+/.exec(heading)![0].length
  const start = markdown.indexOf(`\n${heading}\n`)
  expect(start, `a "${heading}" section`).toBeGreaterThan(-1)
  const rest = markdown.slice(start + heading.length + 2)
  const next = rest.search(new RegExp(`^#{1,${level}} `, 'm'))
  return next === -1 ? rest : rest.slice(0, next)
}

/** The table rows under a heading of @saiku/core's README, up to the first line that is not a row. */
function tableRows(markdown: string, heading: string): string[] {
  const lines = section(markdown, heading).split('\n')
  const start = lines.findIndex((line) => line.startsWith('|'))
  const end = lines.findIndex((line, index) => index > start && !line.startsWith('|'))
  return lines.slice(start + 2, end) // without the header and its rule
}

/** The members of an interface in packages/core/src/store.ts: methods and fields by name. */
function membersOf(name: string): string[] {
  const source = read('packages/core/src/store.ts')
  const start = source.indexOf(`export interface ${name} `)
  expect(start, `interface ${name} in store.ts`).toBeGreaterThan(-1)
  const body = source.slice(source.indexOf('{', start) + 1, source.indexOf('\n}', start))
  return [...body.matchAll(/^ {2}(?:readonly )?(\w+)\??[(:]/gm)].map((match) => match[1]!)
}

describe('package READMEs', () => {
  it('cover every package', () => {
    expect(packages).toEqual(
      expect.arrayContaining(['core', 'express', 'fastify', 'koa', 'postgres', 'redis', 'sqlite']),
    )
  })

  describe.each(packages)('packages/%s', (name) => {
    it('names this repository in its repository field, so its README can link to it', () => {
      expect(manifest(name).repository).toEqual({
        type: 'git',
        url: `git+${REPOSITORY}.git`,
        directory: `packages/${name}`,
      })
    })

    it('states the Node versions of its engines field, and no other', () => {
      const engines = manifest(name).engines?.node
      const minimum = /^>=(\d+(?:\.\d+){0,2})$/.exec(engines ?? '')?.[1]
      expect(
        minimum,
        `engines.node of the ">=N" form (update this test for another form), got ${engines}`,
      ).toBeDefined()
      const text = readme(name)
      expect(text).toContain(`Node ${minimum} or newer (\`engines\`: \`${engines}\`)`)
      const stated = [...text.matchAll(/Node(?:\.js)? (\d+(?:\.\d+)*) or newer/g)].map((match) => match[1])
      expect(new Set(stated)).toEqual(new Set([minimum]))
    })

    it('links the guides and the repository by absolute URL, and says how to build its API reference', () => {
      const text = readme(name)
      const guides = [...section(text, '## Guides').matchAll(/\]\(([^)]+)\)/g)].map((match) => match[1]!)
      expect(guides.length).toBeGreaterThan(0)
      for (const href of guides) expect(href).toMatch(new RegExp(`^${REPOSITORY}/blob/main/docs/[\\w-]+\\.md$`))
      const ownRepository = [...text.matchAll(/\]\((https:\/\/github\.com\/[^)]+)\)/g)].map((match) => match[1]!)
      for (const href of ownRepository) expect(href.startsWith(`${REPOSITORY}/`) || href === REPOSITORY).toBe(true)
      const reference = section(text, '## API reference')
      expect(reference).toContain('`pnpm docs:api`')
      expect(reference).toContain('`.cache/api-reference/index.html`')
      expect(JSON.parse(read('package.json')).scripts['docs:api']).toBe('node scripts/docs-api.mjs')
    })

    if (name !== 'core') {
      it("copies no row of @saiku/core's Options and Errors tables: it links them", () => {
        const core = readme('core')
        const text = readme(name)
        const copied = [...tableRows(core, '## Options'), ...tableRows(core, '## Errors')].filter((row) =>
          text.includes(row),
        )
        expect(copied).toEqual([])
      })
    }
  })

  it.each(['express', 'koa', 'fastify'])("packages/%s/README.md links @saiku/core's Options and Errors", (name) => {
    const text = readme(name)
    expect(section(text, '## Options')).toContain(`](${REPOSITORY}/blob/main/packages/core/README.md#options)`)
    expect(section(text, '## Errors')).toContain(`](${REPOSITORY}/blob/main/packages/core/README.md#errors)`)
  })
})

describe("@saiku/core's README carries the KeyStore contract", () => {
  const keyStoreSection = () => section(readme('core'), '## Your key store')

  it('a row for each KeyStore method, saying what it must do', () => {
    const contract = keyStoreSection()
    const methods = membersOf('KeyStore')
    expect(methods).toEqual(expect.arrayContaining(['findKey', 'findTenant', 'createKey', 'listKeys', 'revokeKey']))
    for (const method of methods)
      expect(contract).toMatch(new RegExp(`^\\| \`${method}\\([^\`]*\\)\` \\| .{20,} \\|$`, 'm'))
  })

  it('every field of ApiKeyRecord and of ApiKeySummary', () => {
    const contract = keyStoreSection()
    for (const record of ['ApiKeyRecord', 'ApiKeySummary']) {
      expect(contract).toContain(`\`${record}\``)
      for (const field of membersOf(record)) expect(contract, `${record}.${field}`).toContain(`\`${field}\``)
    }
  })

  it('the conformance suite snippet, verbatim from the test file that runs it', () => {
    const contract = keyStoreSection()
    expect(contract).toContain(`\`\`\`ts\n${read('packages/core/src/readme-key-store.test.ts')}\`\`\``)
    expect(contract).toContain('npx vitest run')
  })
})
