#!/usr/bin/env node
// The operator CLI: runs src/cli.ts through tsx.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
// The flags this process was started with (a package script's `--conditions`) go to the CLI too.
const result = spawnSync(process.execPath, [...process.execArgv, '--import', 'tsx', cli, ...process.argv.slice(2)], {
  stdio: 'inherit',
})
process.exit(result.status ?? 1)
