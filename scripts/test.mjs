#!/usr/bin/env node
// `pnpm test`: the stages in order, each one of package.json's scripts, stopping at the
// first that fails; the last line says which stage failed and what it ran, so a red run
// is read from its end. Arguments go to the test stage (`pnpm test -- test/readme.test.ts`).
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

const STAGES = [
  { stage: 'build', script: 'build' },
  { stage: 'types', script: 'typecheck' },
  { stage: 'docs', script: 'docs:api' },
  { stage: 'lint', script: 'lint' },
  { stage: 'format', script: 'format:check' },
  { stage: 'tests', script: 'test:vitest' },
]

const { scripts = {} } = JSON.parse(readFileSync(join(process.cwd(), 'package.json'), 'utf8'))
const extra = process.argv.slice(2).filter((arg, index) => !(index === 0 && arg === '--'))
const startedMs = Date.now()

for (const { stage, script } of STAGES) {
  const command = scripts[script]
  if (command === undefined) {
    console.error(`pnpm test: failed at ${stage} (package.json has no "${script}" script)`)
    process.exit(1)
  }
  const args = ['run', script, ...(stage === 'tests' ? extra : [])]
  const result = spawnSync('pnpm', args, { stdio: 'inherit' })
  if (result.status !== 0) {
    const how = result.signal === null ? '' : `, ${result.signal}`
    console.error(`pnpm test: failed at ${stage} (${[command, ...args.slice(2)].join(' ')}${how})`)
    process.exit(result.status === null || result.status === 0 ? 1 : result.status)
  }
}
const seconds = Math.round((Date.now() - startedMs) / 1000)
console.log(`pnpm test: passed (${STAGES.map(({ stage }) => stage).join(', ')}) in ${seconds} s`)
