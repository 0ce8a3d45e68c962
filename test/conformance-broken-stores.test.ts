import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { expect, it } from 'vitest'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))

interface JsonReport {
  testResults: { name: string; assertionResults: { title: string; status: string; failureMessages: string[] }[] }[]
}

// Each store in test/fixtures/broken-stores is wrong in one way the conformance suite must catch,
// in exactly the check that covers it, with a message that names the field.
const expected: Record<string, { title: string; message: RegExp }> = {
  'revoke-own-clock.conformance.ts': {
    title: 'revokes once, and reports unknown or already revoked keys',
    message:
      /^AssertionError: findKey returned another revokedAt than revokeKey was given: store the revokedAt argument/,
  },
  'case-insensitive.conformance.ts': {
    title: 'finds key IDs case-sensitively (not by a case-insensitive collation)',
    message: /^AssertionError: findKey\('\w{12}'\) found the key '\w{12}': keyId must match case-sensitively/,
  },
  'last-use-backwards.conformance.ts': {
    title: 'records last use when it supports it',
    message: /^AssertionError: recordKeyUse with an older usedAt moved lastUsedAt backwards/,
  },
  'insertion-order.conformance.ts': {
    title: "lists only the tenant's live keys, oldest first, without secrets or digests",
    message:
      /^AssertionError: listKeys must return exactly the tenant's unrevoked keys, ordered by createdAt, oldest first/,
  },
}

it('the conformance suite rejects each broken store in the check for its fault, naming the field', async () => {
  const outputDir = mkdtempSync(join(tmpdir(), 'saiku-broken-stores-'))
  const outputFile = join(outputDir, 'report.json')
  // The run fails (the stores are broken); the report is what matters.
  await run(
    `${root}/node_modules/.bin/vitest`,
    [
      'run',
      '--config',
      `${root}/test/fixtures/broken-stores/vitest.config.ts`,
      '--reporter=json',
      `--outputFile=${outputFile}`,
    ],
    { cwd: root },
  ).catch(() => {})
  const report = JSON.parse(readFileSync(outputFile, 'utf8')) as JsonReport
  rmSync(outputDir, { recursive: true, force: true })
  const failures = Object.fromEntries(
    report.testResults.map((file) => [
      basename(file.name),
      file.assertionResults.filter((test) => test.status !== 'passed'),
    ]),
  )
  expect(Object.keys(failures).sort()).toEqual(Object.keys(expected).sort())
  for (const [file, { title, message }] of Object.entries(expected)) {
    expect(
      failures[file]!.map((test) => test.title),
      file,
    ).toEqual([title])
    expect(failures[file]![0]!.failureMessages[0], file).toMatch(message)
  }
}, 120_000)
