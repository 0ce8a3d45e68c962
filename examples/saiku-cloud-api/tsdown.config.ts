import { defineConfig } from 'tsdown'

/**
 * The production build: the server and the CLI as plain ESM for Node 22, run with
 * `node dist/server.mjs`. The @saiku packages and the other dependencies stay
 * imports, resolved to their built `dist/` at run time.
 */
export default defineConfig({
  entry: ['src/server.ts', 'src/cli.ts'],
  format: ['esm'],
  platform: 'node',
  target: 'node22',
  sourcemap: true,
  dts: false,
  clean: true,
  // The dashboard reads its templates and serves its assets from beside its module: in dist/, beside the bundle.
  copy: [
    { from: 'src/dashboard/views', to: 'dist' },
    { from: 'src/dashboard/assets', to: 'dist' },
  ],
})
