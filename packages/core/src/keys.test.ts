import { describe, expect, it } from 'vitest'
import {
  API_KEY_LENGTH,
  API_KEY_PATTERN,
  digestApiKey,
  digestsEqual,
  isKeyId,
  keyFingerprint,
  mintApiKey,
  parseApiKey,
  sha256Latin1,
} from './keys.js'

const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/

describe('mintApiKey', () => {
  it('mints keys of the documented shape, in the b64token alphabet', () => {
    const live = mintApiKey()
    expect(live.key).toMatch(/^sk_live_[0-9A-Za-z]{12}_[0-9A-Za-z]{38}$/)
    expect(live.key).toHaveLength(API_KEY_LENGTH)
    expect(live.key).toMatch(B64TOKEN)
    expect(live.key.slice(8, 20)).toBe(live.keyId)
    expect(mintApiKey('test').key.startsWith('sk_test_')).toBe(true)
  })

  it('never repeats a key or key ID', () => {
    const keys = Array.from({ length: 2_000 }, () => mintApiKey())
    expect(new Set(keys.map((k) => k.key)).size).toBe(2_000)
    expect(new Set(keys.map((k) => k.keyId)).size).toBe(2_000)
  })

  it('draws secret characters uniformly from all 62 (no modulo bias visible)', () => {
    const counts = new Map<string, number>()
    for (let i = 0; i < 2_000; i++) {
      for (const c of mintApiKey().key.slice(21, 53)) counts.set(c, (counts.get(c) ?? 0) + 1)
    }
    expect(counts.size).toBe(62)
    const expected = (2_000 * 32) / 62
    for (const count of counts.values()) expect(Math.abs(count - expected) / expected).toBeLessThan(0.15)
  })
})

describe('parseApiKey', () => {
  it('accepts a minted key and returns its ID and environment', () => {
    const { key, keyId } = mintApiKey('test')
    expect(parseApiKey(key)).toEqual({ ok: true, keyId, environment: 'test' })
  })

  it('rejects every single-character typo through the checksum', () => {
    const { key } = mintApiKey()
    for (let i = 8; i < key.length; i++) {
      if (i === 20) continue
      const replacement = key[i] === 'A' ? 'B' : 'A'
      const typo = key.slice(0, i) + replacement + key.slice(i + 1)
      expect(parseApiKey(typo)).toEqual({ ok: false, reason: 'bad_checksum' })
    }
  })

  it('rejects two swapped neighbours', () => {
    const { key } = mintApiKey()
    const i = key.slice(21).search(/(.)(?!\1)/) + 21
    const swapped = key.slice(0, i) + key[i + 1] + key[i] + key.slice(i + 2)
    expect(parseApiKey(swapped).ok).toBe(false)
  })

  it.each([
    ['empty', ''],
    ['the prefix alone', 'sk_live_'],
    ['an unknown environment', mintApiKey().key.replace('sk_live_', 'sk_prod_')],
    ['one character short', mintApiKey().key.slice(0, -1)],
    ['one character long', `${mintApiKey().key}A`],
    ['a missing separator', mintApiKey().key.replace(/^(sk_live_.{12})_/, '$1A')],
    ['a non-ASCII letter', mintApiKey().key.replace(/.$/, 'é')],
    ['a character that masks to ASCII', mintApiKey().key.replace(/.$/, '\u0141')],
    ['a zero-width space', mintApiKey().key.slice(0, 30) + '\u200b' + mintApiKey().key.slice(31)],
    ['a full-width letter', mintApiKey().key.replace(/.$/, 'Ａ')],
  ])('rejects %s as malformed', (_name, token) => {
    expect(parseApiKey(token)).toEqual({ ok: false, reason: 'malformed' })
  })

  it('finds keys in text for secret scanning', () => {
    const { key } = mintApiKey()
    expect(`config: API_KEY=${key}\n`.match(API_KEY_PATTERN)).toEqual([key])
  })

  it('recognises key IDs', () => {
    expect(isKeyId(mintApiKey().keyId)).toBe(true)
    expect(isKeyId('short')).toBe(false)
    expect(isKeyId('AAAAAAAAAAA/')).toBe(false)
    expect(isKeyId(42)).toBe(false)
  })
})

describe('digests', () => {
  it('hashes with SHA-256, or HMAC-SHA-256 under a pepper', () => {
    expect(digestApiKey('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
    expect(digestApiKey('abc', 'pepper-pepper-pepper')).toMatch(/^[0-9a-f]{64}$/)
    expect(digestApiKey('abc', 'pepper-pepper-pepper')).not.toBe(digestApiKey('abc'))
  })

  it('gives the same SHA-256 as a latin1 string, one character per byte', () => {
    const { key } = mintApiKey()
    expect(sha256Latin1(key)).toHaveLength(32)
    expect(Buffer.from(sha256Latin1(key), 'latin1').toString('hex')).toBe(digestApiKey(key))
  })

  it('compares in constant time and never throws on a length mismatch', () => {
    const a = Buffer.from(digestApiKey('a'), 'hex')
    expect(digestsEqual(a, Buffer.from(a))).toBe(true)
    expect(digestsEqual(a, Buffer.from(digestApiKey('b'), 'hex'))).toBe(false)
    expect(digestsEqual(a, a.subarray(0, 31))).toBe(false)
    expect(digestsEqual(a, Buffer.alloc(0))).toBe(false)
  })

  it('fingerprints without revealing the key', () => {
    const { key } = mintApiKey()
    const fingerprint = keyFingerprint(key)
    expect(fingerprint).toMatch(/^[0-9a-f]{12}$/)
    expect(key).not.toContain(fingerprint)
  })
})
