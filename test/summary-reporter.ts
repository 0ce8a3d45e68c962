import type { Reporter, TestModule } from 'vitest/node'

/** Ends the run with one plain line: `N passed, N failed, N skipped`. */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    const counts = { passed: 0, failed: 0, skipped: 0, pending: 0 }
    for (const module of testModules) {
      for (const test of module.children.allTests()) counts[test.result().state]++
      // A file that failed to load has no tests but must count as a failure.
      if (module.state() === 'failed' && !module.children.size) counts.failed++
    }
    counts.failed += unhandledErrors.length
    process.stdout.write(`\n${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped\n`)
  }
}
