import { express4Harness, express5Harness } from './express.harness.js'
import { koa2Harness, koa3Harness } from './koa.harness.js'
import { describeRealmConformance } from './realm.js'
import { describeAdapterConformance } from './suite.js'

// Every adapter, and each supported major of its framework, answers the same cases identically.
for (const harness of [express5Harness, express4Harness, koa3Harness, koa2Harness]) {
  describeAdapterConformance(harness)
  describeRealmConformance(harness)
}
