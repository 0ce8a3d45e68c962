import { describe, expect, it } from 'vitest'
import type { AuthRequest, DecisionReason } from './decision.js'
import type { ErrorResponse } from './http.js'
import { resolveOptions } from './options.js'
import { createRefusals } from './refusals.js'

const request: AuthRequest = { headers: {}, method: 'GET', url: '/me/tenant', ip: '127.0.0.1' }

function refusals(realm = 'acme-api') {
  const reported: DecisionReason[] = []
  const made = createRefusals({
    options: resolveOptions({ realm }),
    report: (_request, _status, _code, reason) => reported.push(reason),
    reportError: () => {},
    metrics: null,
    failureBudget: null,
    clientOf: () => '127.0.0.1',
  })
  return { made, reported }
}

function expectWhole(response: ErrorResponse): void {
  // The length written is the body's: a body cut short is unreadable JSON.
  expect(Number(response.headers['content-length'])).toBe(Buffer.byteLength(response.body))
  expect(JSON.parse(response.body)).toMatchObject({ error: response.code })
}

describe('createRefusals', () => {
  it('sends every prebuilt refusal whole, its Content-Length its own body’s', () => {
    const { made } = refusals()
    const all = [
      made.ofBearer(request, { kind: 'missing' }),
      made.ofBearer(request, { kind: 'ambiguous' }),
      made.failed(request, 'malformed_credentials'),
      made.failed(request, 'unknown_key', {}, true),
      made.tooManyFailures(request, 12_300),
      made.lookupsBusy(request, 1_000),
    ] as ErrorResponse[]
    for (const response of all) expectWhole(response)
    // The signed token's body names the token, under the same challenge as an API key's.
    expect(JSON.parse(all[3]!.body)).toEqual({
      error: 'unauthorized',
      message: 'Access token invalid, expired or revoked.',
    })
    expect(all[3]!.headers['www-authenticate']).toBe(all[2]!.headers['www-authenticate'])
  })

  it('names the configured realm in every challenge', () => {
    const { made } = refusals('acme-api')
    for (const response of [
      made.ofBearer(request, { kind: 'missing' }),
      made.ofBearer(request, { kind: 'ambiguous' }),
      made.failed(request, 'unknown_key'),
    ] as ErrorResponse[]) {
      expect(response.headers['www-authenticate']).toMatch(/^Bearer realm="acme-api"/)
    }
  })

  it('answers a flood with one body per Retry-After value, each reported', () => {
    const { made, reported } = refusals()
    const first = made.tooManyFailures(request, 4_001) as ErrorResponse
    expect(made.tooManyFailures(request, 4_500)).toBe(first)
    expect(first.headers['retry-after']).toBe('5')
    expect(first.body).toContain('Retry in 5 s.')
    expect((made.tooManyFailures(request, 900) as ErrorResponse).headers['retry-after']).toBe('1')
    expect(reported).toEqual(['too_many_failures', 'too_many_failures', 'too_many_failures'])
  })
})
