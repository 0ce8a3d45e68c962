// Type tests of the hooks' signatures, checked by `pnpm typecheck` (tsc): a wrong type fails it.
// Nothing here runs; the file is not a vitest test file.
import { expectTypeOf } from 'vitest'
import type { SaikuOptions } from './index.js'

// Every hook may be async.
expectTypeOf({
  onDecision: async () => {},
  onError: async () => {},
  cost: async () => 2,
  subscription: { isExempt: async (path: string) => path === '/me/billing' },
}).toExtend<SaikuOptions>()

// An observer's answer is ignored, whatever it is: `(e) => list.push(e)` is a hook too.
expectTypeOf({ onDecision: () => 1, onError: () => 'logged' }).toExtend<SaikuOptions>()

// A hook whose answer matters answers with the right type, at once or later.
// @ts-expect-error: a cost is a number
expectTypeOf({ cost: async () => '2' }).toExtend<SaikuOptions>()
// @ts-expect-error: an exemption is a boolean
expectTypeOf({ subscription: { isExempt: async () => 'yes' } }).toExtend<SaikuOptions>()
