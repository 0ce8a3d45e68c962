import { express4Harness, express5Harness } from './express.harness.js'
import { koa2Harness, koa3Harness } from './koa.harness.js'
import { describeAdapterConformance } from './suite.js'

// Every adapter, and each supported major of its framework, answers the same cases identically:
// a new adapter is one harness file added here, a new concern one file added to suite.ts.
for (const harness of [express5Harness, express4Harness, koa3Harness, koa2Harness]) {
  describeAdapterConformance(harness)
}
