import { describe, expect, it } from 'vitest'
import { extractBearer } from './bearer.js'

const from = (authorization?: string, extra: { rawHeaders?: string[]; url?: string } = {}) =>
  extractBearer({ headers: authorization === undefined ? {} : { authorization }, ...extra })

describe('extractBearer', () => {
  it.each([
    ['Bearer abc', 'abc'],
    ['bearer abc', 'abc'],
    ['BEARER abc', 'abc'],
    ['Bearer    abc', 'abc'],
    ['Bearer a-b.c_d~e+f/g==', 'a-b.c_d~e+f/g=='],
  ])('reads %j', (header, token) => {
    expect(from(header)).toEqual({ kind: 'token', token })
  })

  it.each([undefined, 'Basic abc', 'Token abc', 'Bearerabc', 'Bear abc', ''])(
    'reads %j as no credentials',
    (header) => {
      expect(from(header)).toEqual({ kind: 'missing' })
    },
  )

  it.each([
    'Bearer',
    'Bearer ',
    'Bearer\tabc',
    'Bearer a=b',
    'Bearer a;b',
    'Bearer a"b',
    'Bearer a\u0000b',
    'Bearer é',
    `Bearer ${'a'.repeat(8193)}`,
    'Bearer =',
  ])('reads %j as malformed', (header) => {
    expect(from(header)).toEqual({ kind: 'malformed' })
  })

  it.each(['Bearer a b', 'Bearer a,Bearer b', 'Bearer a, b'])('reads %j as ambiguous', (header) => {
    expect(from(header)).toEqual({ kind: 'ambiguous' })
  })

  it('reads two raw Authorization headers as ambiguous, whatever their case', () => {
    const rawHeaders = ['Host', 'x', 'authorization', 'Bearer a', 'AUTHORIZATION', 'Bearer b']
    expect(from('Bearer a', { rawHeaders })).toEqual({ kind: 'ambiguous' })
    expect(from('Bearer a', { rawHeaders: ['Authorization', 'Bearer a'] })).toEqual({ kind: 'token', token: 'a' })
  })

  it('reads a token in the header and the query string as ambiguous', () => {
    expect(from('Bearer a', { url: '/me?access_token=a' })).toEqual({ kind: 'ambiguous' })
    expect(from('Bearer a', { url: '/me?x=1&ACCESS_TOKEN=a' })).toEqual({ kind: 'ambiguous' })
    expect(from('Bearer a', { url: '/me?my_access_token=a' })).toEqual({ kind: 'token', token: 'a' })
    expect(from(undefined, { url: '/me?access_token=a' })).toEqual({ kind: 'missing' })
  })

  it('leaves no token in the legacy RegExp statics, which any code can read', () => {
    const key = 'sk_live_abcdefghijkl_0123456789abcdefghijklmnopqrstuvwxyzABCD'
    // Read right after the parse: any later successful match (an assertion's, say) would replace them.
    const statics = () => [RegExp.input, RegExp.lastMatch, RegExp.leftContext, RegExp.rightContext].join('\n')
    const token = from(`Bearer ${key}`)
    const afterToken = statics()
    const inQuery = from(`Bearer ${key}`, { url: `/me?access_token=${key}` })
    const afterQuery = statics()
    expect(token).toEqual({ kind: 'token', token: key })
    expect(inQuery).toEqual({ kind: 'ambiguous' })
    expect(afterToken).not.toContain(key)
    expect(afterQuery).not.toContain(key)
  })
})
