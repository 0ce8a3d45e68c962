import { readFileSync } from 'node:fs'
import type { RequestListener } from 'node:http'
import { fileURLToPath } from 'node:url'
import request from 'supertest'
import { afterEach, describe, expect, it } from 'vitest'
import { createKeyManager, MemoryKeyStore, type TenantRecord } from '@saiku/core'
import { createApp as expressApp } from './express.js'
import { createApp as fastifyApp } from './fastify.js'
import { createApp as koaApp } from './koa.js'
import { createApp as passApp } from './preflight-pass.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const read = (path: string) => readFileSync(`${root}/${path}`, 'utf8')

const ORIGIN = 'https://app.example.com'
const PREFLIGHT = {
  Origin: ORIGIN,
  'Access-Control-Request-Method': 'GET',
  'Access-Control-Request-Headers': 'authorization',
}
/** Two a minute, so the third request is a 429. */
const acme: TenantRecord = {
  tenantId: 't-acme',
  tenantSlug: 'acme',
  tier: 'enterprise',
  connectionName: 'acme-warehouse',
  subscription: { status: 'active', trialEndsAt: null },
  limits: { perMinute: 2, perHour: 10 },
}
const FIRST_COUNTED = '"minute";r=1;t=60, "hour";r=9;t=3600'

const closers: (() => Promise<unknown>)[] = []
afterEach(async () => {
  for (const close of closers.splice(0)) await close()
})

async function setUp(start: (store: MemoryKeyStore) => Promise<RequestListener>) {
  const store = new MemoryKeyStore({ tenants: [acme] })
  const { key } = await createKeyManager(store).create(acme.tenantId, { label: 'browser' })
  return { key, handler: await start(store) }
}

const frameworks: [string, (store: MemoryKeyStore) => Promise<RequestListener>][] = [
  ['Express (cors)', async (store) => expressApp(store)],
  ['Koa (@koa/cors)', async (store) => koaApp(store).callback()],
  [
    'Fastify (@fastify/cors)',
    async (store) => {
      const app = fastifyApp(store)
      await app.ready()
      closers.push(() => app.close())
      return (req, res) => app.routing(req, res)
    },
  ],
]

/** The comma-separated names of a header, in lower case. */
const names = (value: string | undefined) => (value ?? '').split(',').map((name) => name.trim().toLowerCase())

describe('docs/cors.md', () => {
  it.each(['test/cors/express.ts', 'test/cors/koa.ts', 'test/cors/fastify.ts', 'test/cors/preflight-pass.ts'])(
    'quotes %s verbatim',
    (snippet) => {
      const blocks = [...read('docs/cors.md').matchAll(/```\w*\n([\s\S]*?)```/g)].map((match) => match[1]!)
      expect(blocks).toContain(read(snippet))
    },
  )
})

describe.each(frameworks)('CORS mounted first: %s', (_name, start) => {
  it('answers a preflight 204 itself: no 401, no challenge, nothing counted', async () => {
    const { key, handler } = await setUp(start)
    for (let i = 0; i < 3; i++) {
      const res = await request(handler).options('/me/tenant').set(PREFLIGHT)
      expect(res.status).toBe(204)
      expect(res.headers['access-control-allow-origin']).toBe(ORIGIN)
      expect(names(res.headers['access-control-allow-headers'])).toContain('authorization')
      expect(res.headers['www-authenticate']).toBeUndefined()
      expect(res.headers['ratelimit']).toBeUndefined()
    }
    // The tenant's first counted request: the preflights took nothing.
    const res = await request(handler)
      .get('/me/tenant')
      .set({ Origin: ORIGIN, Authorization: `Bearer ${key}` })
    expect(res.headers['ratelimit']).toBe(FIRST_COUNTED)
  })

  it('lets a script on the origin read the rate-limit fields of a 200, and the Retry-After of a 429', async () => {
    const { key, handler } = await setUp(start)
    const send = () =>
      request(handler)
        .get('/me/tenant')
        .set({ Origin: ORIGIN, Authorization: `Bearer ${key}` })
    const admitted = await send()
    expect(admitted.status).toBe(200)
    expect(admitted.body).toMatchObject({ tenantSlug: 'acme' })
    expect(admitted.headers['access-control-allow-origin']).toBe(ORIGIN)
    expect(names(admitted.headers['access-control-expose-headers'])).toEqual(
      expect.arrayContaining(['ratelimit', 'ratelimit-policy', 'retry-after']),
    )
    expect(admitted.headers['ratelimit']).toBe(FIRST_COUNTED)
    expect(admitted.headers['ratelimit-policy']).toBe('"minute";q=2;w=60, "hour";q=10;w=3600')
    expect((await send()).status).toBe(200)
    const refused = await send()
    expect(refused.status).toBe(429)
    expect(refused.headers['access-control-allow-origin']).toBe(ORIGIN)
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0)
    // And a refused key is a 401 the script can read.
    const unauthorized = await request(handler).get('/me/tenant').set({ Origin: ORIGIN })
    expect([unauthorized.status, unauthorized.headers['access-control-allow-origin']]).toEqual([401, ORIGIN])
  })

  it('gives an origin not in the list no Access-Control-Allow-Origin', async () => {
    const { key, handler } = await setUp(start)
    const other = 'https://elsewhere.example.net'
    const preflight = await request(handler)
      .options('/me/tenant')
      .set({ ...PREFLIGHT, Origin: other })
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined()
    const res = await request(handler)
      .get('/me/tenant')
      .set({ Origin: other, Authorization: `Bearer ${key}` })
    expect(res.headers['access-control-allow-origin']).toBeUndefined()
  })
})

describe("CORS after the middleware, with preflight: 'pass'", () => {
  it('the preflight reaches cors() uncounted; a 200 carries the CORS fields, a refusal none', async () => {
    const { key, handler } = await setUp(async (store) => passApp(store))
    const preflight = await request(handler).options('/me/tenant').set(PREFLIGHT)
    expect(preflight.status).toBe(204)
    expect(preflight.headers['access-control-allow-origin']).toBe(ORIGIN)
    const send = () =>
      request(handler)
        .get('/me/tenant')
        .set({ Origin: ORIGIN, Authorization: `Bearer ${key}` })
    const admitted = await send()
    expect(admitted.headers['ratelimit']).toBe(FIRST_COUNTED)
    expect(admitted.headers['access-control-allow-origin']).toBe(ORIGIN)
    expect(names(admitted.headers['access-control-expose-headers'])).toContain('ratelimit')
    await send()
    // Refused before cors() runs: what docs/cors.md warns of.
    const refused = await send()
    expect([refused.status, refused.headers['access-control-allow-origin']]).toEqual([429, undefined])
  })
})
