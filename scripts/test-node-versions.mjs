// Runs the unit and conformance tests on other Node.js majors than the one that
// installed the workspace: each runtime is unpacked from its registry package,
// better-sqlite3 is compiled once per major against that runtime's own headers,
// and its binary is swapped in for the run and put back afterwards.
// Usage: node scripts/test-node-versions.mjs 22 24 26 [-- <test path> …]
import { execFileSync, spawnSync } from 'node:child_process'
import { copyFileSync, cpSync, existsSync, mkdtempSync, realpathSync, renameSync, rmSync, unlinkSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { nodeRuntime } from './node-runtime.mjs'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')

const requireFromSqlite = createRequire(join(root, 'packages', 'sqlite', 'package.json'))
const addonPackage = realpathSync(dirname(requireFromSqlite.resolve('better-sqlite3/package.json')))
const installedBinary = join(addonPackage, 'build', 'Release', 'better_sqlite3.node')
const setAside = `${installedBinary}.installed`

/** better-sqlite3 compiled for the runtime at `home`, built once into the runtime's folder. */
function addonFor(home) {
  const built = join(home, 'better_sqlite3.node')
  if (existsSync(built)) return built
  const work = mkdtempSync(join(tmpdir(), 'saiku-addon-'))
  try {
    cpSync(addonPackage, work, { recursive: true, filter: (source) => !source.startsWith(join(addonPackage, 'build')) })
    const nodeGyp = createRequire(join(root, 'package.json')).resolve('node-gyp/bin/node-gyp.js')
    const build = spawnSync(
      join(home, 'bin', 'node'),
      [nodeGyp, 'rebuild', '--release', `--nodedir=${home}`, '--jobs=max'],
      {
        cwd: work,
        encoding: 'utf8',
        env: { ...process.env, npm_config_nodedir: home },
      },
    )
    // The compiler's warnings are noise unless the build fails.
    if (build.status !== 0)
      throw new Error(`better-sqlite3 did not build for ${home}:\n${build.stdout}\n${build.stderr}`)
    copyFileSync(join(work, 'build', 'Release', 'better_sqlite3.node'), built)
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
  return built
}

/** Puts the binary that the install built back in place (also after an interrupted run). */
function restoreInstalledAddon() {
  if (!existsSync(setAside)) return
  if (existsSync(installedBinary)) unlinkSync(installedBinary)
  renameSync(setAside, installedBinary)
}

// Majors first, then optionally `--` and the test files to run instead of the unit and conformance tests.
const separator = process.argv.indexOf('--')
const majors = process.argv.slice(2, separator === -1 ? undefined : separator)
const testPaths = separator === -1 ? ['packages/', 'test/conformance/'] : process.argv.slice(separator + 1)
if (majors.length === 0 || majors.some((major) => !/^\d+$/.test(major))) {
  console.error('usage: node scripts/test-node-versions.mjs <major> [<major> …] [-- <test path> …]')
  process.exit(2)
}

restoreInstalledAddon()
const results = []
for (const major of majors) {
  const started = Date.now()
  const home = nodeRuntime(major)
  const node = join(home, 'bin', 'node')
  const version = execFileSync(node, ['--version']).toString().trim()
  console.log(`\n── Node ${version}: building better-sqlite3 against its headers`)
  const addon = addonFor(home)
  const builtSeconds = (Date.now() - started) / 1000
  renameSync(installedBinary, setAside)
  let status
  try {
    // A copy, never a link: the installed file may be shared with the package store.
    copyFileSync(addon, installedBinary)
    console.log(`── Node ${version}: unit and conformance tests`)
    const vitestPackage = createRequire(join(root, 'package.json')).resolve('vitest/package.json')
    const vitest = join(dirname(vitestPackage), 'vitest.mjs')
    status = spawnSync(node, [vitest, 'run', ...testPaths], {
      cwd: root,
      stdio: 'inherit',
      env: { ...process.env, PATH: `${join(home, 'bin')}${delimiter}${process.env.PATH ?? ''}` },
    }).status
  } finally {
    restoreInstalledAddon()
  }
  results.push({ version, ok: status === 0, builtSeconds, totalSeconds: (Date.now() - started) / 1000 })
}

console.log('\nNode.js majors:')
for (const { version, ok, builtSeconds, totalSeconds } of results) {
  console.log(
    `  ${version}: ${ok ? 'passed' : 'FAILED'} in ${totalSeconds.toFixed(0)} s (addon ready after ${builtSeconds.toFixed(0)} s)`,
  )
}
process.exit(results.every((result) => result.ok) ? 0 : 1)
