// One linter for the whole workspace: typescript-eslint's type-checked rules over
// every TypeScript file (each file read through the tsconfig.json nearest to it),
// and the plain JavaScript rules over the few .mjs/.js files.
import js from '@eslint/js'
import { defineConfig } from 'eslint/config'
import globals from 'globals'
import tseslint from 'typescript-eslint'

const typescriptFiles = [
  'packages/*/src/**/*.ts',
  'packages/*/tsdown.config.ts',
  'examples/*/src/**/*.ts',
  'examples/*/test/**/*.ts',
  'test/**/*.ts',
  'bench/**/*.ts',
  'scripts/**/*.ts',
]
const nodeScripts = ['scripts/**/*.mjs', 'bench/**/*.mjs', 'test/**/*.mjs', 'examples/*/bin/**/*.mjs']
const browserScripts = ['examples/*/src/**/assets/**/*.js']

export default defineConfig(
  {
    ignores: [
      '**/dist/**',
      '**/node_modules/**',
      '**/coverage/**',
      '**/.cache/**',
      'bench/results/**',
      'bench/.build/**',
      // Next.js's build output (examples/nextjs-route).
      '**/.next/**',
      // A CommonJS app's source under its own tsconfigs, type-checked by test/packaging.test.ts.
      'test/fixtures/types-cjs/**',
      // vitest's JSON report, written by a test run.
      '**/.vitest/**',
      // The reference server's data folder: its SQLite file and JWT signing key.
      'examples/*/data/**',
    ],
  },
  {
    files: [...typescriptFiles, ...nodeScripts, ...browserScripts],
    extends: [js.configs.recommended],
    linterOptions: { reportUnusedDisableDirectives: 'error' },
  },
  {
    files: typescriptFiles,
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          args: 'after-used',
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
        },
      ],
      // Stores implement the Promise-returning KeyStore interface with synchronous bodies on purpose:
      // `async` turns a throw into a rejection, which is what callers of the interface handle.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    files: ['**/*.test.ts', 'test/**/*.ts', 'examples/*/test/**/*.ts'],
    rules: {
      // Tests read untyped bodies (supertest's `response.body`, JSON.parse, client internals) and let expect check their shape.
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      // A reply body is declared `any` in tests, as supertest declares it.
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  {
    files: nodeScripts,
    languageOptions: { globals: globals.node },
  },
  {
    files: browserScripts,
    languageOptions: { sourceType: 'script', globals: globals.browser },
  },
)
