import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))

interface JsonReport {
  testResults: { assertionResults: { title: string; status: string; failureMessages: string[] }[] }[]
}

// A store author reads these failures: each must say what the store did wrong, and
// point into the suite's source (source maps), not only `expected true to be false`.
describe('the published conformance suite (@saiku/core/testing, built)', () => {
  it('says what a store that forgets revocations did wrong, with a stack into the source', async () => {
    const config = `${root}/test/fixtures/broken-store/vitest.config.ts`
    const outputDir = mkdtempSync(join(tmpdir(), 'saiku-conformance-report-'))
    const outputFile = join(outputDir, 'report.json')
    // The run fails (the store is broken); the report is what matters.
    await run(
      `${root}/node_modules/.bin/vitest`,
      ['run', '--config', config, '--reporter=json', `--outputFile=${outputFile}`],
      { cwd: root },
    ).catch(() => {})
    const report = JSON.parse(readFileSync(outputFile, 'utf8')) as JsonReport
    rmSync(outputDir, { recursive: true, force: true })
    const failed = report.testResults
      .flatMap((file) => file.assertionResults)
      .filter((test) => test.status === 'failed')
    expect(failed.map((test) => test.title)).toEqual([
      'revokes once, and reports unknown or already revoked keys',
      'serves the whole pipeline: a key works until it is revoked',
    ])
    expect(failed[0]!.failureMessages[0]).toMatch(
      /^AssertionError: findKey returned a revoked key without revokedAt: expected null to be an instance of Date/,
    )
    expect(failed[0]!.failureMessages[0]).toContain('core/src/testing.ts:')
    expect(failed[1]!.failureMessages[0]).toMatch(
      /^AssertionError: a revoked key was still admitted: findKey must return revokedAt after revokeKey/,
    )
  }, 60_000)
})
