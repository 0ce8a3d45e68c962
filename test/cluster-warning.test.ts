import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))

async function stderrOf(sharedBackend: boolean): Promise<string> {
  const { stderr } = await run(
    process.execPath,
    ['--conditions=@saiku/source', '--import', 'tsx', 'test/fixtures/cluster-worker.mjs'],
    {
      cwd: root,
      env: { ...process.env, SAIKU_SHARED_BACKEND: sharedBackend ? '1' : '0' },
    },
  )
  return stderr
}

describe('memory limiter in a cluster', () => {
  it('warns once at start-up in a cluster worker', async () => {
    const stderr = await stderrOf(false)
    expect(stderr.match(/\[SAIKU_MEMORY_LIMITER_IN_CLUSTER\]/g)).toHaveLength(1)
    expect(stderr).toContain('each admits the full limit')
  })

  it('stays quiet with a shared backend', async () => {
    const stderr = await stderrOf(true)
    expect(stderr).not.toContain('SAIKU_MEMORY_LIMITER_IN_CLUSTER')
  })
})
