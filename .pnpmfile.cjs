// typescript-eslint and TypeDoc read programs through TypeScript's JavaScript API,
// which TypeScript 7 (the workspace's compiler) no longer has. Give the linter's
// packages and the API reference's generator a TypeScript 6 of their own instead
// of the workspace's peer.
const typescriptForLint = '~6.0.3'
const usesTypeScriptApi = (name) =>
  name === 'typescript-eslint' ||
  name.startsWith('@typescript-eslint/') ||
  name === 'ts-api-utils' ||
  name === 'typedoc'

function readPackage(pkg) {
  if (usesTypeScriptApi(pkg.name) && pkg.peerDependencies?.typescript) {
    delete pkg.peerDependencies.typescript
    if (pkg.peerDependenciesMeta) delete pkg.peerDependenciesMeta.typescript
    pkg.dependencies = { ...pkg.dependencies, typescript: typescriptForLint }
  }
  return pkg
}

module.exports = { hooks: { readPackage } }
