import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import * as adapter from '@saiku/core/adapter'
import * as core from '@saiku/core'
import * as jwt from '@saiku/core/jwt'
import * as rateLimiterFlexible from '@saiku/core/rate-limiter-flexible'
import * as store from '@saiku/core/store'
import * as testing from '@saiku/core/testing'

// The API section of @saiku/core's README names every value each entry exports, and nothing else.
const readme = readFileSync(new URL('../packages/core/README.md', import.meta.url), 'utf8')
const entries: Record<string, object> = {
  '@saiku/core': core,
  '@saiku/core/store': store,
  '@saiku/core/adapter': adapter,
  '@saiku/core/jwt': jwt,
  '@saiku/core/rate-limiter-flexible': rateLimiterFlexible,
  '@saiku/core/testing': testing,
}

/** The names in the first column of the table under `### \`entry\``, calls reduced to their names. */
function documented(entry: string): string[] {
  const start = readme.indexOf(`### \`${entry}\`\n`)
  expect(start, `a section for ${entry}`).toBeGreaterThan(-1)
  const end = readme.indexOf('\n#', start + 1)
  const section = readme.slice(start, end === -1 ? undefined : end)
  const firstCells = [...section.matchAll(/^\| (.+?) \| .* \|$/gm)]
    .map((m) => m[1]!)
    .filter((cell) => cell !== 'export' && !/^-+$/.test(cell))
  return firstCells.flatMap((cell) => [...cell.matchAll(/`([A-Za-z_][\w]*)[^`]*`/g)].map((m) => m[1]!))
}

describe("@saiku/core's README API section", () => {
  for (const [entry, module] of Object.entries(entries)) {
    it(`lists exactly the values ${entry} exports`, () => {
      expect([...new Set(documented(entry))].sort()).toEqual(Object.keys(module).sort())
    })
  }

  // 25, and the four calendar functions of day and month quotas (billing pages and backends read the same windows).
  it('keeps the main entry to the user API: at most 29 values', () => {
    expect(Object.keys(core).length).toBeLessThanOrEqual(29)
  })
})
