import { packageConfig } from '../../tsdown.shared.ts'

// One output per entry of package.json's "exports": @saiku/core and its subpaths.
export default packageConfig({
  index: 'src/index.ts',
  adapter: 'src/entries/adapter.ts',
  store: 'src/entries/store.ts',
  jwt: 'src/entries/jwt.ts',
  'rate-limiter-flexible': 'src/entries/rate-limiter-flexible.ts',
  testing: 'src/testing.ts',
})
