import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

// A test run must leave the checkout as it found it: a test that rewrites a tracked
// file (a screenshot, a report under docs/) or leaves a file git would offer to commit
// is named here. The state before and after is git's status with a hash of each
// changed file's content, so a file already edited before the run only counts if it
// changed again. Under CI (CI=true, as .ci/run sets) that fails the run; on a
// developer's machine it is a warning, since a file edited by hand during a long run
// looks the same. Outside a git checkout (an unpacked tarball) there is nothing to compare.

const root = fileURLToPath(new URL('..', import.meta.url))
const git = (args: readonly string[]) =>
  execFileSync('git', [...args], { cwd: root, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })

/** Each changed or untracked path (not ignored) → its status and the hash of its content now. */
function snapshot(): Map<string, string> {
  const entries = git(['status', '--porcelain=v1', '-z', '--no-renames', '--untracked-files=all'])
    .split('\0')
    .filter((entry) => entry !== '')
    .map((entry) => ({ status: entry.slice(0, 2), path: entry.slice(3) }))
  const present = entries.filter((entry) => !entry.status.includes('D'))
  const hashes =
    present.length === 0
      ? []
      : execFileSync('git', ['hash-object', '--stdin-paths'], {
          cwd: root,
          encoding: 'utf8',
          input: present.map((entry) => entry.path).join('\n'),
        }).split('\n')
  const state = new Map(entries.map((entry) => [entry.path, entry.status]))
  present.forEach((entry, index) => state.set(entry.path, `${entry.status} ${hashes[index]}`))
  return state
}

function insideGitCheckout(): boolean {
  try {
    return git(['rev-parse', '--is-inside-work-tree']).trim() === 'true'
  } catch {
    return false
  }
}

export default function setup(): (() => void) | undefined {
  if (!insideGitCheckout()) return undefined
  const before = snapshot()
  return () => {
    const after = snapshot()
    const changed = [...new Set([...before.keys(), ...after.keys()])]
      .filter((path) => before.get(path) !== after.get(path))
      .sort()
    if (changed.length === 0) return
    const message = `the test run changed files in the checkout (tests must write outside it, or to an ignored folder): ${changed.join(', ')}`
    if (process.env.CI === 'true') throw new Error(message)
    console.warn(`Warning: ${message}. Under CI=true this fails the run; a file edited during the run shows here too.`)
  }
}
