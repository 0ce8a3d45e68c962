// Installs the workspace. Native addons (better-sqlite3) compile against the
// headers of the running Node when it ships them, so no header download is needed.
// pnpm must not install on its own before this script runs (verifyDepsBeforeRun in
// pnpm-workspace.yaml): that install would not see the headers set here.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'

const OLDEST_MAJOR = 22
const major = Number(process.versions.node.split('.')[0])
if (major < OLDEST_MAJOR) {
  console.error(
    `Node ${process.version} is older than this project supports (${OLDEST_MAJOR} or newer).\n` +
      `Unpack a supported one and put it first on PATH, then run the set-up again:\n` +
      `  export PATH="$(node scripts/node-runtime.mjs ${OLDEST_MAJOR}):$PATH"`,
  )
  process.exit(1)
}

const env = { ...process.env }
const nodePrefix = dirname(dirname(process.execPath))
if (env.npm_config_nodedir === undefined && existsSync(join(nodePrefix, 'include', 'node', 'node.h'))) {
  env.npm_config_nodedir = nodePrefix
}
const args = ['install', ...(env.CI === 'true' ? ['--frozen-lockfile'] : [])]
const result = spawnSync('pnpm', args, { stdio: 'inherit', env })
process.exit(result.status ?? 1)
