import { defineConfig, type UserConfig } from 'tsdown'

/** Every package builds the same way: ESM and CJS for Node 22, with declarations and source maps. */
export function packageConfig(entry: string[] | Record<string, string> = ['src/index.ts']): UserConfig {
  return defineConfig({
    entry,
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
    platform: 'node',
    target: 'node22',
    clean: true,
  })
}
