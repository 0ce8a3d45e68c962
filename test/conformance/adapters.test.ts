import { describe, expect, it } from 'vitest'
import { express4Harness, express5Harness } from './express.harness.js'
import { fastifyHarness } from './fastify.harness.js'
import { fetchHarness } from './fetch.harness.js'
import { honoHarness } from './hono.harness.js'
import { koa2Harness, koa3Harness } from './koa.harness.js'
import { nodeHarness } from './node.harness.js'
import { describeAdapterConformance } from './suite.js'

// Every adapter, and each supported major of its framework, answers the same cases identically:
// a new adapter is one harness file added here, a new concern one file added to suite.ts.
const harnesses = [
  express5Harness,
  express4Harness,
  koa3Harness,
  koa2Harness,
  fastifyHarness,
  fetchHarness,
  honoHarness,
  nodeHarness,
]
for (const harness of harnesses) describeAdapterConformance(harness)

describe('adapter conformance: cases not applicable', () => {
  it('are exactly these, per adapter: every other case runs on every adapter', () => {
    expect(Object.fromEntries(harnesses.map((harness) => [harness.name, harness.notApplicable ?? {}]))).toEqual({
      'express 5': {},
      'express 4': {},
      'koa 3': {},
      'koa 2': {},
      'fastify 5': {},
      fetch: {
        'adapter conformance: fetch: error handling and error bodies > never answers twice, nor with a 401, once a response has started':
          'a Fetch handler returns its Response before the body streams: an error in the body stream is the host server’s to report, after withSaiku has answered',
        'adapter conformance: fetch: subscription > matches exempt paths below the mount point when the middleware is mounted in a router':
          'a Fetch handler has no mount point: it and its exemptions see the full path',
        'adapter conformance: fetch: per-route cost > asks the cost function once per request with the method, the mounted path and the tenant':
          'a Fetch handler has no mount point: the cost function sees the full path',
        'adapter conformance: fetch: CORS preflights > below a mount point too':
          'a Fetch handler has no mount point: a preflight is matched on the full path',
        'adapter conformance: fetch: hooks that throw or reject > saikuErrors({ onError }) as an async hook that rejects: still the JSON 500, one warning per distinct message':
          'its last step needs an error after the response started, which a Fetch handler cannot make (see that case); withSaiku’s onError that rejects is pinned in packages/fetch/src/index.test.ts',
        'adapter conformance: fetch: hooks that throw or reject > saikuErrors({ onError }) as a hook that throws: still the JSON 500, one warning per distinct message':
          'its last step needs an error after the response started, which a Fetch handler cannot make (see that case); withSaiku’s onError that throws is pinned in packages/fetch/src/index.test.ts',
      },
      'hono 4': {
        'adapter conformance: hono 4: error handling and error bodies > never answers twice, nor with a 401, once a response has started':
          'a Hono handler returns its Response before the body streams: an error in the body stream is the host server’s to report, after the middleware has answered',
        'adapter conformance: hono 4: hooks that throw or reject > saikuErrors({ onError }) as an async hook that rejects: still the JSON 500, one warning per distinct message':
          'its last step needs an error after the response started, which a Hono handler cannot make (see that case); saikuErrors’ onError that rejects is pinned in packages/fetch/src/hono.test.ts',
        'adapter conformance: hono 4: hooks that throw or reject > saikuErrors({ onError }) as a hook that throws: still the JSON 500, one warning per distinct message':
          'its last step needs an error after the response started, which a Hono handler cannot make (see that case); saikuErrors’ onError that throws is pinned in packages/fetch/src/hono.test.ts',
      },
      'node:http': {
        'adapter conformance: node:http: CORS preflights > below a mount point too':
          'a node:http server has no router to mount in: a preflight is matched on the whole path',
        'adapter conformance: node:http: per-route cost > asks the cost function once per request with the method, the mounted path and the tenant':
          'a node:http server has no router to mount in: saikuAuth sees the whole path, so exemptions and the cost function name it',
        'adapter conformance: node:http: subscription > matches exempt paths below the mount point when the middleware is mounted in a router':
          'a node:http server has no router to mount in: saikuAuth sees the whole path, so exemptions and the cost function name it',
      },
    })
  })
})
