// @saiku/node's README: its snippets are tested files, quoted verbatim, and they do what it says.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import request from 'supertest'
import { afterEach, describe, expect, it } from 'vitest'
import { createKeyManager, mintApiKey } from '@saiku/core'
import { MemoryKeyStore, withSaiku, type SaikuNodeAuth, type TenantRecord } from '@saiku/node'
import { createAuth } from './readme/node-behind-a-proxy.js'
import { createListener } from './readme/node-one-line.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const read = (path: string) => readFileSync(`${root}/${path}`, 'utf8')
const readme = read('packages/node/README.md')
const codeBlocks = (markdown: string) => [...markdown.matchAll(/```\w*\n([\s\S]*?)```/g)].map((match) => match[1]!)

const acme: TenantRecord = {
  tenantId: '00000000-0000-4000-8000-acme00000000',
  tenantSlug: 'acme',
  tier: 'starter',
  connectionName: 'acme-warehouse',
  subscription: { status: 'active' },
}

const closers: (() => void)[] = []
afterEach(() => {
  for (const close of closers.splice(0)) close()
})

describe('packages/node/README.md', () => {
  it.each([
    'examples/node-http-basic/src/app.ts',
    'test/readme/node-one-line.ts',
    'test/readme/node-behind-a-proxy.ts',
  ])('quotes %s verbatim', (file) => {
    expect(codeBlocks(readme)).toContain(read(file))
  })

  it('stands alone: no links to files its tarball does not ship, and the CORS guide by its absolute address', () => {
    const links = [...readme.matchAll(/\]\(([^)]+)\)/g)].map((match) => match[1]!)
    expect(links.filter((href) => !/^(https:\/\/|#)/.test(href))).toEqual([])
    expect(links).toContain('https://github.com/saiku/saiku-auth/blob/main/docs/cors.md')
    expect(readme).toContain('`preflight`')
  })

  it('examples/node-http-basic/README.md says how to copy it', () => {
    const copy = read('examples/node-http-basic/README.md').split('## Copy it\n')[1] ?? ''
    expect(copy).toContain('npx degit saiku/saiku-auth/examples/node-http-basic my-app')
    expect(copy).toContain('"workspace:^"')
    expect(copy).toContain('npm start')
  })

  it('the one line: the tenant with its RateLimit fields for a good key, the JSON 401 for none', async () => {
    const store = new MemoryKeyStore({ tenants: [acme] })
    const { key } = await createKeyManager(store).create(acme.tenantId, { label: 'agent' })
    const listener = createListener(store)
    const admitted = await request(listener).get('/me/tenant').set('Authorization', `Bearer ${key}`)
    expect(admitted.status).toBe(200)
    expect(admitted.body).toEqual({
      tenantId: acme.tenantId,
      tenantSlug: 'acme',
      tier: 'starter',
      connectionName: 'acme-warehouse',
    })
    expect(admitted.headers['ratelimit']).toBe('"minute";r=59;t=60, "hour";r=999;t=3600')
    const refused = await request(listener).get('/me/tenant')
    expect(refused.status).toBe(401)
    expect(refused.body).toEqual({ error: 'unauthorized', message: 'API key missing or invalid.' })
  })

  it('behind a proxy: the last hop is the client, so entries a client puts before it buy no fresh budget', async () => {
    const track = (auth: SaikuNodeAuth) => (closers.push(() => auth.authenticator.close()), auth)
    const auth = track(createAuth(new MemoryKeyStore({ tenants: [acme] })))
    const app = withSaiku(auth, (_req, res) => res.end('ok'))
    // The default failed-authentication budget: 30 a minute per address.
    const statuses: number[] = []
    for (let i = 0; i < 31; i++) {
      const res = await request(app)
        .get('/me/tenant')
        .set('Authorization', `Bearer ${mintApiKey().key}`)
        .set('X-Forwarded-For', `203.0.113.${i}, 198.51.100.7`)
      statuses.push(res.status)
    }
    expect(statuses).toEqual([...Array<number>(30).fill(401), 429])
    const other = await request(app)
      .get('/me/tenant')
      .set('Authorization', `Bearer ${mintApiKey().key}`)
      .set('X-Forwarded-For', '198.51.100.8')
    expect(other.status).toBe(401)
  })
})
