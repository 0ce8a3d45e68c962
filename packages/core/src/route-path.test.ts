import { describe, expect, it } from 'vitest'
import type { AuthRequest } from './decision.js'
import { routePath } from './route-path.js'

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
