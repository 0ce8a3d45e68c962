import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import type { BenchResults } from '../bench/report.js'

const run = promisify(execFile)
const bench = fileURLToPath(new URL('../bench/', import.meta.url))

// A smoke test of `pnpm bench --quick`: it runs and its numbers are sane. Speed is never asserted here.
describe('pnpm bench --quick', () => {
  it('loads every variant, measures decisions, and writes JSON, Markdown and SVG', async () => {
    await run(process.execPath, ['build.mjs'], { cwd: bench })
    const { stdout } = await run(process.execPath, ['.build/run.js', '--quick'], { cwd: bench, maxBuffer: 10_000_000 })
    const results = JSON.parse(readFileSync(`${bench}results/latest.json`, 'utf8')) as BenchResults
    const expected = [
      'node:http',
      'express',
      'express+saiku',
      'express+floor',
      'express+hashfloor',
      'express+passport+erl',
      'koa',
      'koa+saiku',
      'koa+floor',
      'koa+hashfloor',
      'fastify',
      'fastify+saiku',
      'fastify+floor',
      'fastify+hashfloor',
      'hono',
      'hono+saiku',
      'hono+floor',
      'hono+hashfloor',
    ]
    if (process.env.REDIS_URL !== undefined) expected.push('express+saiku+redis')
    expect(Object.keys(results.summaries).sort()).toEqual(expected.sort())
    for (const summary of Object.values(results.summaries)) {
      expect(summary.rps).toBeGreaterThan(0)
      expect(summary.cpuMicrosPerRequest).toBeGreaterThan(0)
      expect(summary.p99Ms).toBeGreaterThanOrEqual(summary.p50Ms)
      if (summary.baseline === null) expect(summary.ratioToBaseline).toBeNull()
      else expect(summary.ratioToBaseline).toBeGreaterThan(0)
    }
    expect(results.rounds).toHaveLength(2)
    for (const round of results.rounds) expect(round.stealPercent).toBeGreaterThanOrEqual(0)
    expect(results.decisions.map((d) => d.name)).toEqual([
      'cache hit (admitted)',
      'cache hit (admitted), metrics on',
      'cache miss (MemoryKeyStore)',
      'garbage token (checksum, no store)',
      'unknown key (checksum ok, cached as unknown)',
      'refused (429)',
      'cache hit (admitted), rolling windows',
      'refused (429), rolling windows',
      'cache hit (admitted), cost 2',
      'cache hit (admitted), cost 0',
      'over the limit, report-only (admitted)',
    ])
    for (const decision of results.decisions) expect(decision.nsPerDecision).toBeGreaterThan(0)
    if (results.redis !== null) {
      expect(results.redis.roundTripsPerRequest).toBe(1)
      expect(results.redis.rolling.roundTripsPerRequest).toBe(1)
      expect(results.redis.commandsPerRequest).toBeLessThan(
        results.redis.rateLimiterFlexibleTwoLimiters.commandsPerRequest,
      )
      // What day and month quotas add to a Redis decision, paired round by round, beside its control.
      expect(results.redisQuotas?.rounds).toBe(10)
      expect(results.redisQuotas?.withQuotasMicros).toBeGreaterThan(0)
      expect(Number.isFinite(results.redisQuotas?.extra.meanMicros)).toBe(true)
      expect(stdout).toContain('Quotas on Redis, Node CPU per decision')
      // The Redis backend beside memory over HTTP: both frameworks, 1 and 32 connections, Node and redis-server CPU.
      const backend = results.redisBackend!
      expect(backend.rounds).toBe(2)
      expect(backend.rows).toHaveLength(2 * 2 * 4)
      for (const row of backend.rows) {
        expect(row.rps).toBeGreaterThan(0)
        expect(row.nodeCpuMicros).toBeGreaterThan(0)
        if (row.backend !== 'memory') expect(row.redisCpuMicros).toBeGreaterThanOrEqual(0)
      }
      expect(backend.comparisons.map((c) => `${c.framework}@${c.connections}`).sort()).toEqual(
        ['Express@1', 'Express@32', 'Koa@1', 'Koa@32'].sort(),
      )
      expect(stdout).toContain('Redis beside memory')
    }
    // saikuAuth's distance to the floor and to the hashing floor, per framework, from the same rounds.
    expect(results.floors?.map((floor) => floor.framework)).toEqual(['Express', 'Koa', 'Fastify', 'Hono'])
    for (const floor of results.floors ?? []) {
      expect(Number.isFinite(floor.distanceCpuMicros)).toBe(true)
      expect(Number.isFinite(floor.aboveHashingFloorCpuMicros)).toBe(true)
      expect(Number.isFinite(floor.hashingFloorAddedCpuMicros)).toBe(true)
    }
    // The same distance without sockets, beside its control: from batches that each app answered with 200.
    expect(results.inProcessFloors?.map((floor) => floor.framework)).toEqual(['Express', 'Koa', 'Fastify', 'Hono'])
    // The new adapters are held to the target above the hashing floor; Express and Koa are reported the same way.
    expect(results.inProcessFloors?.map((floor) => [floor.framework, floor.gated])).toEqual([
      ['Express', false],
      ['Koa', false],
      ['Fastify', true],
      ['Hono', true],
    ])
    for (const floor of results.inProcessFloors ?? []) {
      expect(floor.processes).toBe(2)
      expect(floor.rounds).toBe(30)
      expect(floor.saikuCpuMicros).toBeGreaterThan(0)
      expect(floor.floorCpuMicros).toBeGreaterThan(0)
      for (const distance of [
        floor.aboveFloor,
        floor.control,
        floor.hashingFloor!,
        floor.aboveHashingFloor!,
        floor.adapter,
      ]) {
        expect(Number.isFinite(distance.meanMicros)).toBe(true)
        expect(distance.plusMinusMicros).toBeGreaterThan(0)
      }
    }
    // Where the distance goes, by profile: samples went to each app's batches, by the clock the batches were timed on.
    expect(results.floorProfiles?.map((profile) => profile.framework)).toEqual(['Express', 'Koa', 'Fastify', 'Hono'])
    for (const profile of results.floorProfiles ?? []) {
      expect(profile.processes).toBe(1)
      for (const owner of ['core', 'core: SHA-256', 'adapter', 'framework'] as const)
        expect(profile.saiku[owner]).toBeGreaterThan(0)
      for (const owner of ['bench app', 'framework'] as const) expect(profile.floor[owner]).toBeGreaterThan(0)
      for (const owner of ['core', 'core: SHA-256', 'adapter'] as const) expect(profile.floor[owner]).toBe(0)
      expect(profile.saikuBytes).toBeGreaterThan(0)
      expect(profile.floorBytes).toBeGreaterThan(0)
    }
    expect(stdout).toContain('From CPU profiles')
    expect(stdout).toContain('| server | req/s |')
    expect(stdout).toContain('Without sockets')
    expect(stdout).toContain('saikuAuth above the floor, µs/req')
    expect(stdout).toContain('saikuAuth above the hashing floor, µs/req')
    // One verdict line per framework above its hashing floor: Fastify's and Hono's targets, Express's and Koa's reported.
    for (const framework of ['Express', 'Koa', 'Fastify', 'Hono']) {
      const verdict = stdout
        .split('\n')
        .find((line) => line.startsWith(`| ${framework} + saikuAuth: CPU above the hashing floor < 2 µs`))
      expect(verdict, framework).toMatch(
        framework === 'Fastify' || framework === 'Hono'
          ? / \| (?:yes|no) \|$/
          : / \| (?:yes|no) \(reported, not gated\) \|$/,
      )
    }
    expect(readFileSync(`${bench}results/ratios.svg`, 'utf8')).toMatch(
      /^<svg [^>]+>[\s\S]*Koa \+ saikuAuth[\s\S]*<\/svg>\n$/,
    )
    // Under load (other test files, a shared machine) a quick run of every variant takes minutes: generous.
  }, 420_000)
})
