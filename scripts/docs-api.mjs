#!/usr/bin/env node
// `pnpm docs:api`: the API reference of the published packages, generated from their TSDoc
// by TypeDoc into .cache/api-reference/ (ignored). One module per entry in each package's
// `exports`, named as it is imported (`@saiku/core/store`). Validation is on and every
// warning fails the run: a `{@link}` that resolves to nothing, a type that the public API
// names but no entry exports, an entry whose source is missing.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'

const root = process.cwd()
const out = join(root, '.cache', 'api-reference')

/** Every published entry: `{ name: '@saiku/core/store', file: '/…/packages/core/src/entries/store.ts' }`. */
function publishedEntries() {
  const entries = []
  for (const folder of readdirSync(join(root, 'packages')).sort()) {
    const manifestPath = join(root, 'packages', folder, 'package.json')
    if (!existsSync(manifestPath)) continue
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'))
    if (manifest.private === true) continue
    for (const [subpath, target] of Object.entries(manifest.exports ?? {})) {
      if (subpath === './package.json') continue
      const source = typeof target === 'object' && target !== null ? target['@saiku/source'] : undefined
      const name = subpath === '.' ? manifest.name : `${manifest.name}/${subpath.slice(2)}`
      if (typeof source !== 'string') {
        fail(`${manifest.name}: exports["${subpath}"] has no "@saiku/source" condition to document ${name} from`)
      }
      const file = resolve(root, 'packages', folder, source)
      if (!existsSync(file)) fail(`${name}: its source ${relative(root, file)} does not exist`)
      entries.push({ name, file })
    }
  }
  if (entries.length === 0) fail('no published entry found under packages/*/package.json')
  return entries
}

function fail(message) {
  console.error(`docs:api: ${message}`)
  process.exit(1)
}

const entries = publishedEntries()
// Loaded once the entries are known, so a missing one fails at once.
const { Application, Converter, ReflectionKind } = await import('typedoc')
const nameOf = new Map(entries.map(({ name, file }) => [file, name]))

const app = await Application.bootstrapWithPlugins({
  name: 'Saiku auth',
  entryPoints: entries.map(({ file }) => file),
  entryPointStrategy: 'resolve',
  tsconfig: join(root, 'tsconfig.docs.json'),
  out,
  readme: 'none',
  excludePrivate: true,
  excludeInternal: true,
  validation: { notExported: true, invalidLink: true, rewrittenLink: true, notDocumented: false },
  treatWarningsAsErrors: true,
  treatValidationWarningsAsErrors: true,
  logLevel: 'Warn',
})

// Modules are named as they are imported, not by their path in the repository.
app.converter.on(Converter.EVENT_CREATE_DECLARATION, (_context, reflection) => {
  if (!reflection.kindOf(ReflectionKind.Module)) return
  const file = reflection.sources?.[0]?.fullFileName
  const name = file === undefined ? undefined : nameOf.get(resolve(file))
  if (name !== undefined) reflection.name = name
})

const project = await app.convert()
if (project === undefined) fail('TypeDoc could not read the packages (see the lines above)')
app.validate(project)
// TypeDoc looks for unexported types only in the project's own package (the root's), so
// run that check once as each published package.
const packageNames = [...new Set(entries.map(({ name }) => name.split('/').slice(0, 2).join('/')))]
const projectPackageName = project.packageName
app.options.setValue('validation', { notExported: true, invalidLink: false, invalidPath: false, rewrittenLink: false })
for (const packageName of packageNames) {
  project.packageName = packageName
  app.validate(project)
}
project.packageName = projectPackageName
if (app.logger.hasErrors() || app.logger.hasWarnings()) fail('the TSDoc has the problems above')

const documented = new Set(project.getChildrenByKind(ReflectionKind.Module).map((module) => module.name))
const missing = entries.filter(({ name }) => !documented.has(name)).map(({ name }) => name)
if (missing.length > 0) fail(`no module in the reference for ${missing.join(', ')}`)

await app.generateDocs(project, out)
if (app.logger.hasErrors() || app.logger.hasWarnings()) fail('the reference was written with the problems above')
console.log(
  `docs:api: ${entries.length} entries of ${packageNames.length} packages written to ${relative(root, out)}/index.html`,
)
