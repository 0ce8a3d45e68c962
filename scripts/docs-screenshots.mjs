#!/usr/bin/env node
// `pnpm docs:screenshots`: takes the dashboard's screenshots in Chromium (the browser
// tests write them to .cache/screenshots/dashboard/, which git ignores) and copies them
// to docs/dashboard/, where the reference server's README shows them. The test run itself
// never changes a tracked file; this is the one command that updates the committed pictures.
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const taken = join(root, '.cache/screenshots/dashboard')
const docs = join(root, 'docs/dashboard')

rmSync(taken, { recursive: true, force: true })
const vitest = spawnSync(
  process.execPath,
  // A filter, not one file: every dashboard test file (dashboard.test.ts, dashboard-members.test.ts, …) takes pictures;
  // and so do the Account page's and the Webhooks page's browser tests.
  [
    join(root, 'node_modules/vitest/vitest.mjs'),
    'run',
    'examples/saiku-cloud-api/test/dashboard',
    'examples/saiku-cloud-api/test/account-browser.test.ts',
    'examples/saiku-cloud-api/test/webhooks/dashboard.test.ts',
  ],
  { cwd: root, stdio: 'inherit' },
)
if (vitest.status !== 0) {
  console.error(
    `docs:screenshots: the dashboard tests failed (exit ${vitest.status ?? vitest.signal}); docs/dashboard/ is unchanged`,
  )
  process.exit(1)
}
const files = existsSync(taken) ? readdirSync(taken).filter((file) => file.endsWith('.png')) : []
if (files.length === 0) {
  // The browser tests skip themselves without Chromium: a green run with no pictures.
  console.error(
    'docs:screenshots: no screenshots were taken (is Chromium at /usr/bin/chromium?); docs/dashboard/ is unchanged',
  )
  process.exit(1)
}
mkdirSync(docs, { recursive: true })
for (const file of files.sort()) copyFileSync(join(taken, file), join(docs, file))
console.log(`docs:screenshots: ${files.length} screenshots copied to docs/dashboard/: ${files.join(', ')}`)
