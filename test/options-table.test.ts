import { readFileSync } from 'node:fs'
import { DEFAULTS } from '@saiku/core'
import { describe, expect, it } from 'vitest'

// The Options table and the DEFAULTS literal must say the same thing. Its one home is @saiku/core's README,
// which the registry shows on its own; every other page links to it.
const readme = readFileSync(new URL('../packages/core/README.md', import.meta.url), 'utf8')
/** The first table under `## Options`: its lines up to the first line that is not a table row. */
const lines = readme.slice(readme.indexOf('\n## Options\n')).split('\n')
const start = lines.findIndex((line) => line.startsWith('|'))
const table = lines
  .slice(
    start,
    lines.findIndex((line, index) => index > start && !line.startsWith('|')),
  )
  .join('\n')
const rows = [...table.matchAll(/^\| `([\w.]+)` \| ([^|]+) \|/gm)].map((m) => ({
  option: m[1]!,
  shown: m[2]!.trim(),
}))

function defaultAt(path: string): unknown {
  return path
    .split('.')
    .reduce<unknown>((value, key) => (value as Record<string, unknown> | undefined)?.[key], DEFAULTS)
}

/** A default cell's value when it is a literal (`'draft-11'`, `1000`, `false`, `['live', 'test']`); undefined for prose. */
function literal(shown: string): unknown {
  const code = /^`(.+)`$/.exec(shown)?.[1]
  if (code === undefined) return undefined
  try {
    return JSON.parse(code.replaceAll("'", '"')) as unknown
  } catch {
    return undefined // a name, such as `cache.ttlMs`
  }
}

function leafPaths(value: object, prefix = ''): string[] {
  return Object.entries(value).flatMap(([key, inner]) =>
    typeof inner === 'object' && inner !== null && !Array.isArray(inner)
      ? leafPaths(inner as object, `${prefix}${key}.`)
      : [`${prefix}${key}`],
  )
}

describe("@saiku/core's Options table", () => {
  it('has a row for every option of DEFAULTS, and no other', () => {
    expect(rows.map((row) => row.option).sort()).toEqual(leafPaths(DEFAULTS).sort())
  })

  it('shows each literal default as DEFAULTS holds it', () => {
    const literals = rows.filter((row) => literal(row.shown) !== undefined)
    expect(literals.length).toBeGreaterThan(20)
    for (const { option, shown } of literals) expect(defaultAt(option), option).toEqual(literal(shown))
  })

  it('shows a default in prose only where DEFAULTS has none of its own', () => {
    for (const { option, shown } of rows.filter((row) => literal(row.shown) === undefined)) {
      expect(defaultAt(option), `${option} (${shown})`).toBeUndefined()
    }
  })
})
