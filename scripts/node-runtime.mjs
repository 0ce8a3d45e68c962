// Unpacks a Node.js runtime of the given major version from its registry package
// (node-<platform>-<arch>, which ships bin/node and the headers in include/) into
// .cache/node/<major>, and prints its bin directory. Used where the machine's own
// Node is older than the project supports, and for the test runs on every
// supported major. Usage: node scripts/node-runtime.mjs <major>
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')

/** The directory of an unpacked Node.js `major` (with bin/node and include/node), fetched once. */
export function nodeRuntime(major) {
  if (!/^\d+$/.test(String(major)))
    throw new Error(`expected a Node.js major version such as 24, got ${JSON.stringify(major)}`)
  const home = join(root, '.cache', 'node', String(major))
  if (existsSync(join(home, 'bin', 'node')) && existsSync(join(home, 'include', 'node', 'node.h'))) return home
  const work = mkdtempSync(join(tmpdir(), 'saiku-node-'))
  try {
    const spec = `node-${process.platform}-${process.arch}@${major}`
    execFileSync('npm', ['pack', spec, '--silent', '--pack-destination', work], {
      stdio: ['ignore', 'ignore', 'inherit'],
    })
    const tarball = readdirSync(work).find((name) => name.endsWith('.tgz'))
    if (tarball === undefined) throw new Error(`npm pack ${spec} produced no tarball`)
    execFileSync('tar', ['-xzf', join(work, tarball), '-C', work])
    rmSync(home, { recursive: true, force: true })
    mkdirSync(dirname(home), { recursive: true })
    renameSync(join(work, 'package'), home)
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
  return home
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const major = process.argv[2]
  if (major === undefined) {
    console.error('usage: node scripts/node-runtime.mjs <major>')
    process.exit(2)
  }
  process.stdout.write(`${join(nodeRuntime(major), 'bin')}\n`)
}
