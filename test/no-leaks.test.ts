import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { digestApiKey } from '@saiku/core/store'
import { type SaikuOptions } from '@saiku/core'
import { express5Harness } from './conformance/express.harness.js'
import type { AdapterHarness } from './conformance/harness.js'
import { koa3Harness } from './conformance/koa.harness.js'
import { describeAdapterConformance } from './conformance/suite.js'

// Runs the whole conformance suite again while recording everything that leaves
// the package: every response header and body, every hook payload, every log line.
const secrets = new Set<string>()
const labels = new Set<string>()
const bodies: string[] = []
const headers: string[] = []
const hookPayloads: string[] = []
const logLines: string[] = []

function recording(handler: RequestListener): RequestListener {
  return (req: IncomingMessage, res: ServerResponse) => {
    const setHeader = res.setHeader.bind(res)
    res.setHeader = (name, value) => {
      headers.push(`${name}: ${String(value)}`)
      return setHeader(name, value)
    }
    const write = res.write.bind(res) as (...args: unknown[]) => boolean
    res.write = ((chunk: unknown, ...rest: unknown[]) => {
      if (chunk !== undefined && chunk !== null && typeof chunk !== 'function')
        bodies.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8'))
      return write(chunk, ...rest)
    }) as typeof res.write
    const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse
    res.end = ((chunk?: unknown, ...rest: unknown[]) => {
      if (chunk !== undefined && chunk !== null && typeof chunk !== 'function')
        bodies.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8'))
      return end(chunk, ...rest)
    }) as typeof res.end
    handler(req, res)
  }
}

function instrumented(harness: AdapterHarness): AdapterHarness {
  return {
    name: `${harness.name} (recorded)`,
    createApp(store, options: SaikuOptions, fixtures, settings) {
      const app = harness.createApp(
        store,
        {
          ...options,
          onDecision: (event) => {
            hookPayloads.push(JSON.stringify(event))
            // The hook's own answer, a promise for an async one: whatever it rejects with must still be heard.
            return options.onDecision?.(event)
          },
          onError: (error) => {
            hookPayloads.push(`${error.name}: ${error.message} ${JSON.stringify(error)}`)
            return options.onError?.(error)
          },
        },
        fixtures,
        settings,
      )
      const create = app.authenticator.keys.create.bind(app.authenticator.keys)
      app.authenticator.keys.create = async (tenantId, input) => {
        const created = await create(tenantId, input)
        secrets.add(created.key)
        labels.add(created.label)
        return created
      }
      return { ...app, handler: recording(app.handler) }
    },
  }
}

beforeAll(() => {
  for (const method of ['log', 'info', 'warn', 'error', 'debug'] as const) {
    vi.spyOn(console, method).mockImplementation((...args: unknown[]) => void logLines.push(args.map(String).join(' ')))
  }
})

for (const harness of [express5Harness, koa3Harness]) describeAdapterConformance(instrumented(harness))

describe('nothing secret leaves the package', () => {
  afterAll(() => vi.restoreAllMocks())

  it('no response, hook payload or log line holds a key, its digest or an Authorization value', () => {
    expect(secrets.size).toBeGreaterThan(50)
    expect(bodies.length).toBeGreaterThan(500)
    expect(hookPayloads.length).toBeGreaterThan(0)
    const everything = [...bodies, ...headers, ...hookPayloads, ...logLines].join('\n')
    for (const secret of secrets) {
      expect(everything).not.toContain(secret)
      expect(everything).not.toContain(secret.slice(21, 53))
      expect(everything).not.toContain(digestApiKey(secret))
    }
    expect(everything).not.toMatch(/Bearer sk_/i)
  })

  it('never puts a key label in a header', () => {
    const headerText = headers.join('\n')
    const distinctive = [...labels].filter((label) => label.length >= 5)
    expect(distinctive.length).toBeGreaterThan(3)
    for (const label of distinctive) expect(headerText).not.toContain(label)
  })
})
