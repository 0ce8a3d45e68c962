import { describe, expect, it } from 'vitest'
import { express4Harness, express5Harness } from './express.harness.js'
import { fastifyHarness } from './fastify.harness.js'
import { koa2Harness, koa3Harness } from './koa.harness.js'
import { nodeHarness } from './node.harness.js'
import { describeAdapterConformance } from './suite.js'

// Every adapter, and each supported major of its framework, answers the same cases identically:
// a new adapter is one harness file added here, a new concern one file added to suite.ts.
const harnesses = [express5Harness, express4Harness, koa3Harness, koa2Harness, fastifyHarness, nodeHarness]
for (const harness of harnesses) describeAdapterConformance(harness)

describe('adapter conformance: cases not applicable', () => {
  it('are exactly these, per adapter: every other case runs on every adapter', () => {
    expect(Object.fromEntries(harnesses.map((harness) => [harness.name, harness.notApplicable ?? {}]))).toEqual({
      'express 5': {},
      'express 4': {},
      'koa 3': {},
      'koa 2': {},
      'fastify 5': {},
      'node:http': {
        'adapter conformance: node:http: per-route cost > asks the cost function once per request with the method, the mounted path and the tenant':
          'a node:http server has no router to mount in: saikuAuth sees the whole path, so exemptions and the cost function name it',
        'adapter conformance: node:http: subscription > matches exempt paths below the mount point when the middleware is mounted in a router':
          'a node:http server has no router to mount in: saikuAuth sees the whole path, so exemptions and the cost function name it',
      },
    })
  })
})
