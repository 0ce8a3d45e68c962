// Installs the workspace. Native addons (better-sqlite3) compile against the
// headers of the running Node when it ships them, so no header download is needed.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'

const env = { ...process.env }
const nodePrefix = dirname(dirname(process.execPath))
if (env.npm_config_nodedir === undefined && existsSync(join(nodePrefix, 'include', 'node', 'node.h'))) {
  env.npm_config_nodedir = nodePrefix
}
const args = ['install', ...(env.CI === 'true' ? ['--frozen-lockfile'] : [])]
const result = spawnSync('pnpm', args, { stdio: 'inherit', env })
process.exit(result.status ?? 1)
