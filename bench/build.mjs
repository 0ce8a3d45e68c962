// Transpiles the benchmark to plain JavaScript first: servers measured under a
// TypeScript loader would pay for its hooks on every lazy require.
import { readdirSync } from 'node:fs'
import { build } from 'esbuild'

const here = new URL('.', import.meta.url).pathname
await build({
  entryPoints: readdirSync(here)
    .filter((name) => name.endsWith('.ts'))
    .map((name) => `${here}${name}`),
  outdir: `${here}.build`,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  logLevel: 'warning',
})
