import { defaultServerConditions } from 'vite'
import { defineConfig } from 'vitest/config'

// Tests import the packages by their public names; the "@saiku/source" condition
// points those at src/ so no build is needed to run them.
const conditions = ['@saiku/source', ...defaultServerConditions]

export default defineConfig({
  ssr: { resolve: { conditions } },
  test: {
    reporters: ['default', './test/summary-reporter.ts'],
    // Fails the run when a test changed a tracked file or left one for git to pick up.
    globalSetup: ['./test/tracked-files.setup.ts'],
    include: ['packages/*/src/**/*.test.ts', 'test/**/*.test.ts', 'examples/*/test/**/*.test.ts'],
    restoreMocks: true,
    testTimeout: 20_000,
    hookTimeout: 30_000,
  },
})
