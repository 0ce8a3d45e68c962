// `node .build/render.js [results.json]`: writes the Markdown and SVG again from a run's JSON (default: the published run).
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { renderMarkdown, renderSvg, type BenchResults } from './report.js'

const docs = fileURLToPath(new URL('../../docs/benchmarks/', import.meta.url))
const source = process.argv[2] ?? `${docs}results.json`
const results = JSON.parse(readFileSync(source, 'utf8')) as BenchResults
writeFileSync(`${docs}results.md`, renderMarkdown(results))
writeFileSync(`${docs}ratios.svg`, renderSvg(results))
process.stdout.write(renderMarkdown(results))
