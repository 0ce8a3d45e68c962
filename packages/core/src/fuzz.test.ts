import fc from 'fast-check'
import { describe, expect, it, vi } from 'vitest'
import { createAuthenticator } from './authenticator.js'
import { extractBearer } from './bearer.js'
import type { AuthRequest } from './decision.js'
import { mintApiKey, parseApiKey, withChecksum } from './keys.js'
import { MemoryKeyStore } from './store.js'

// Runs per property; the totals are printed at the end for the record.
const RUNS = 3_000
const runs: Record<string, number> = {}
const property = <T>(name: string, arbitrary: fc.Arbitrary<T>, check: (value: T) => void | Promise<void>) => {
  it(name, async () => {
    let count = 0
    await fc.assert(
      fc.asyncProperty(arbitrary, async (value) => {
        count++
        await check(value)
      }),
      { numRuns: RUNS },
    )
    runs[name] = count
  })
}

// RFC 6750's b64token, told character by character: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
const B64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/'
function isB64Token(token: string): boolean {
  const body = token.replace(/=+$/, '')
  return body.length > 0 && [...body].every((character) => B64_ALPHABET.includes(character))
}

const KEY_SHAPE = /^sk_(live|test)_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}$/
const minted = Array.from({ length: 20 }, () => mintApiKey().key)

/** Strings a hostile client might send: any code units, unicode look-alikes, controls, CR/LF, long runs. */
const hostileText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.string({
    unit: fc.constantFrom(
      ...'Bearer sk_live_test_,;="\\\r\n\t\u0000\u200b\u00a0\uff21\u0410\u0391\u00e9e\u0301 '.split(''),
    ),
    maxLength: 120,
  }),
  fc.string({ unit: 'grapheme', maxLength: 80 }),
  fc.constantFrom(...minted).chain((key) => mutations(key)),
  fc.nat({ max: 20_000 }).map((n) => `Bearer ${'a'.repeat(n)}`),
  // Repeated schemes, lists and quotes around real keys.
  fc
    .array(fc.constantFrom('Bearer', 'bearer', 'BEARER', 'Basic', ',', ' ', '"', '=', ...minted.slice(0, 3)), {
      maxLength: 6,
    })
    .map((parts) => parts.join(' ')),
)

/** A minted key with one edit: replace, insert or delete a character (ASCII or not), or normalize it. */
function mutations(key: string): fc.Arbitrary<string> {
  const char = fc.oneof(
    fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }),
    fc.constantFrom('\u200b', 'é', 'e\u0301', '\uff21', '\u0430', '\u0000', '\r', '\n'),
  )
  return fc.oneof(
    fc.tuple(fc.nat({ max: key.length - 1 }), char).map(([i, c]) => key.slice(0, i) + c + key.slice(i + 1)),
    fc.tuple(fc.nat({ max: key.length }), char).map(([i, c]) => key.slice(0, i) + c + key.slice(i)),
    fc.nat({ max: key.length - 1 }).map((i) => key.slice(0, i) + key.slice(i + 1)),
    fc.constantFrom('NFC', 'NFD', 'NFKC', 'NFKD').map((form) => key.normalize(form as 'NFC')),
  )
}

describe('properties of the parsers', () => {
  property('parseApiKey never throws, and accepts only a well-formed key with its checksum', hostileText, (text) => {
    const parsed = parseApiKey(text)
    if (parsed.ok) {
      expect(text).toMatch(KEY_SHAPE)
      expect(withChecksum(text.slice(0, 53))).toBe(text)
      expect(text.slice(8, 20)).toBe(parsed.keyId)
    }
  })

  property(
    'a one-character edit of a minted key is never accepted',
    fc.constantFrom(...minted).chain((key) => fc.tuple(fc.constant(key), mutations(key))),
    ([key, edited]) => {
      if (edited !== key) expect(parseApiKey(edited).ok).toBe(false)
    },
  )

  property(
    'extractBearer never throws and returns a token only in b64token form',
    fc.record({
      header: fc.option(hostileText, { nil: undefined }),
      repeat: fc.boolean(),
      url: fc.string({ maxLength: 40 }),
    }),
    ({ header, repeat, url }) => {
      const rawHeaders =
        header === undefined
          ? []
          : repeat
            ? ['Authorization', header, 'authorization', header]
            : ['Authorization', header]
      const result = extractBearer({
        headers: header === undefined ? {} : { authorization: header },
        rawHeaders,
        url: `/me?${url}`,
      })
      expect(['token', 'missing', 'malformed', 'ambiguous']).toContain(result.kind)
      if (result.kind === 'token') {
        expect(isB64Token(result.token)).toBe(true)
        expect(result.token.length).toBeLessThanOrEqual(8192)
        expect(repeat).toBe(false)
      }
    },
  )

  property(
    'extractBearer reads every b64token as a token, whatever the scheme’s case and the spaces before it',
    fc.record({
      body: fc.string({ unit: fc.constantFrom(...B64_ALPHABET.split('')), minLength: 1, maxLength: 200 }),
      padding: fc.nat({ max: 3 }),
      scheme: fc.constantFrom('Bearer', 'bearer', 'BEARER', 'bEaReR'),
      spaces: fc.integer({ min: 1, max: 4 }),
    }),
    ({ body, padding, scheme, spaces }) => {
      const token = body + '='.repeat(padding)
      const authorization = `${scheme}${' '.repeat(spaces)}${token}`
      const result = extractBearer({
        headers: { authorization },
        rawHeaders: ['Authorization', authorization],
        url: '/me',
      })
      expect(result).toEqual({ kind: 'token', token })
    },
  )
})

describe('properties of the whole pipeline', () => {
  const tenant = {
    tenantId: 't',
    tenantSlug: 'acme',
    tier: 'team',
    connectionName: 'w',
    subscription: { status: 'active' as const },
  }
  const store = new MemoryKeyStore({ tenants: [tenant] })
  const auth = createAuthenticator(store, { failedAuth: false })
  let valid = ''
  const findKey = vi.spyOn(store, 'findKey')

  property(
    'never throws or rejects, admits only a minted key, asks the store only for well-formed keys, and answers JSON',
    fc.oneof(hostileText, fc.constant('VALID')),
    async (header) => {
      if (valid === '') valid = (await auth.keys.create('t', { label: 'fuzz' })).key
      const value = header === 'VALID' ? `Bearer ${valid}` : header
      findKey.mockClear()
      const request: AuthRequest = {
        headers: { authorization: value },
        rawHeaders: ['Authorization', value],
        method: 'GET',
        url: '/me/tenant',
      }
      const decision = await auth.authenticate(request)
      const token = value.replace(/^bearer +/i, '')
      if (decision.ok) {
        expect(token).toBe(valid)
        return
      }
      // The store is asked only about a token that is a well-formed, checksummed key.
      if (findKey.mock.calls.length > 0) expect(parseApiKey(token).ok).toBe(true)
      expect([400, 401, 429]).toContain(decision.status)
      const body = JSON.parse(decision.body) as Record<string, unknown>
      expect(Object.keys(body).sort()).toEqual(['error', 'message'])
      expect(decision.body).not.toContain(token.length > 8 ? token : '\u0000never')
      for (const value of Object.values(decision.headers)) expect(value).toMatch(/^[\x20-\x7e]*$/)
    },
  )

  it('ran every property', () => {
    console.log(`fuzz runs: ${JSON.stringify(runs)}`)
    expect(Object.keys(runs)).toHaveLength(5)
  })
})
