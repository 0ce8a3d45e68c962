import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))

describe('a flood of distinct keys, addresses and tenants', () => {
  it('keeps every cache and counter at its cap, and the heap flat', async () => {
    const { stdout } = await run(
      process.execPath,
      ['--expose-gc', '--conditions=@saiku/source', '--import', 'tsx', 'test/fixtures/flood.mjs', '100000', '1000'],
      { cwd: root },
    )
    const result = JSON.parse(stdout) as {
      refused: number
      heapGrowthMb: number
      stats: { cachedKeys: number; cachedTenants: number; countedClients: number }
      limiterTenants: number
    }
    console.log(`flood of 100000: ${JSON.stringify(result)}`)
    expect(result.refused).toBe(100_000)
    expect(result.stats.cachedKeys).toBeLessThanOrEqual(1_000)
    expect(result.stats.countedClients).toBe(1_000)
    expect(result.limiterTenants).toBe(1_000)
    // Without the caps, 100000 cached keys, counters and timers hold tens of megabytes.
    expect(result.heapGrowthMb).toBeLessThan(8)
  }, 120_000)
})
