import { timingSafeEqual } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { digestApiKeyBytes, digestsEqual, mintApiKey, withChecksum } from './keys.js'
import { createKeyManager } from './management.js'
import { MemoryKeyStore } from './store.js'
import { createApiKeyVerifier } from './verifier.js'

/** Every hashing and comparing step the verifier takes, with the lengths it compared. */
function recordingVerifier(store: MemoryKeyStore) {
  const steps: string[] = []
  const verifier = createApiKeyVerifier(store, {
    cacheTtlMs: 60_000,
    negativeCacheTtlMs: 60_000,
    cacheMaxEntries: 100,
    storeTimeoutMs: 1_000,
    serveStaleOnStoreError: false,
    environments: ['live', 'test'],
    lastUsedResolutionMs: 60_000,
    now: Date.now,
    primitives: {
      digest: (token) => {
        steps.push('digest')
        return digestApiKeyBytes(token)
      },
      equal: (a, b) => {
        steps.push(`equal(${a.length},${b.length})`)
        return digestsEqual(a, b)
      },
    },
  })
  return { verifier, steps }
}

describe('checking a wrong secret', () => {
  it('takes the same steps whether the key ID exists or not, and whatever prefix of the secret matches', async () => {
    const store = new MemoryKeyStore({
      tenants: [
        { tenantId: 't', tenantSlug: 'acme', tier: 'team', connectionName: 'w', subscription: { status: 'active' } },
      ],
    })
    const created = await createKeyManager(store).create('t', { label: 'agent' })
    const { verifier, steps } = recordingVerifier(store)
    expect((await verifier.verify(created.key)).ok).toBe(true)

    const secret = created.key.slice(21, 53)
    const other = mintApiKey().key.slice(21, 53)
    const guesses = {
      'unknown key ID': mintApiKey().key,
      'known ID, nothing matches': withChecksum(`sk_live_${created.keyId}_${other}`),
      'known ID, first half matches': withChecksum(`sk_live_${created.keyId}_${secret.slice(0, 16)}${other.slice(16)}`),
      'known ID, all but the last character match': withChecksum(
        `sk_live_${created.keyId}_${secret.slice(0, 31)}${secret.endsWith('A') ? 'B' : 'A'}`,
      ),
    }
    const traces: Record<string, string[]> = {}
    for (const [name, guess] of Object.entries(guesses)) {
      await verifier.verify(guess) // the first sight of an unknown ID loads it
      steps.length = 0
      expect((await verifier.verify(guess)).ok).toBe(false)
      traces[name] = [...steps]
    }
    // One hash and one compare of whole digests (32 bytes), every time.
    for (const trace of Object.values(traces)) expect(trace).toEqual(['digest', 'equal(32,32)'])
  })

  it('uses a compare that never throws on unequal lengths and matches timingSafeEqual otherwise', () => {
    const a = digestApiKeyBytes('a')
    const b = digestApiKeyBytes('b')
    expect(digestsEqual(a, b)).toBe(timingSafeEqual(a, b))
    expect(digestsEqual(a, Buffer.from(a))).toBe(true)
    expect(() => digestsEqual(a, a.subarray(1))).not.toThrow()
  })
})
