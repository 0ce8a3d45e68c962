import { describe, expect, it } from 'vitest'
import type { AuthRequest } from './decision.js'
import { requestIp, routePath } from './route-path.js'

const at = (fields: Partial<AuthRequest>): AuthRequest => ({ headers: {}, method: 'GET', url: '/', ...fields })

describe('routePath: the path exemptions are matched against', () => {
  it.each([
    [{ url: '/me/billing?x=1' }, '/me/billing'],
    [{ url: '/api/me/billing', mountedUrl: '/me/billing#frag' }, '/me/billing'],
    [{ url: 'http://host:80/me/Billing?x' }, '/me/Billing'],
    [{ url: 'HTTPS://host' }, '/'],
    [{ url: '/api/me/billing', mountPrefix: '/api' }, '/me/billing'],
    [{ url: '/API/me/billing', mountPrefix: '/api' }, '/me/billing'],
    [{ url: '/api', mountPrefix: '/api' }, '/'],
    [{ url: '/v1/acme/me/billing', mountPrefix: '/v1/:org' }, '/me/billing'],
    [{ url: '/apix/me/billing', mountPrefix: '/api' }, '/apix/me/billing'],
    [{ url: '/other/me/billing', mountPrefix: '/api' }, '/other/me/billing'],
  ])('%j → %s', (fields, expected) => {
    expect(routePath(at(fields))).toBe(expected)
  })
})

describe('requestIp: the client address, read only when needed', () => {
  it('takes a string as it is, and calls a function once, with the request as this', () => {
    expect(requestIp(at({ ip: '192.0.2.1' }))).toBe('192.0.2.1')
    expect(requestIp(at({}))).toBeUndefined()
    let calls = 0
    const request = {
      ...at({}),
      address: '192.0.2.7',
      ip(this: { address: string }) {
        calls++
        return this.address
      },
    }
    expect(requestIp(request)).toBe('192.0.2.7')
    expect(calls).toBe(1)
  })

  it('reads an address behind a getter once per use', () => {
    let reads = 0
    const request = Object.defineProperty(at({}), 'ip', {
      get: () => {
        reads++
        return '2001:db8::1'
      },
    })
    expect(requestIp(request)).toBe('2001:db8::1')
    expect(reads).toBe(1)
  })
})
