import request from 'supertest'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createKeyManager } from '@saiku/core'
import { openStore, type OpenedStore } from '../src/store.js'
import { createTenant } from '../src/tenants.js'
import { createApp } from '../src/app.js'

describe('example koa-minimal', () => {
  let opened: OpenedStore
  beforeEach(async () => {
    opened = await openStore('sqlite::memory:', { watchChanges: false })
  })
  afterEach(async () => opened.close())

  it('serves the reference server’s tenant and key routes on Koa', async () => {
    const { store } = opened
    const acme = await createTenant(store, { slug: 'acme', tier: 'team', subscription: 'active' })
    const globex = await createTenant(store, { slug: 'globex', tier: 'team', subscription: 'active' })
    const keys = createKeyManager(store)
    const admin = await keys.create(acme.tenantId, { label: 'admin', permissions: ['keys:read', 'keys:write'] })
    const theirs = await keys.create(globex.tenantId, { label: 'theirs' })
    const { app, auth } = createApp(store)
    const server = app.callback()
    const as = (req: request.Test) => req.set('Authorization', `Bearer ${admin.key}`)

    const tenant = await as(request(server).get('/me/tenant'))
    expect(tenant.status).toBe(200)
    expect(tenant.body).toEqual({ tenantId: acme.tenantId, tenantSlug: 'acme', tier: 'team', connectionName: 'production-warehouse' })

    const created = await as(request(server).post('/me/api-keys')).send({ label: 'rotated' })
    expect(created.status).toBe(201)
    expect(created.body).toMatchObject({ label: 'rotated', permissions: ['keys:read', 'keys:write'], secret: expect.stringMatching(/^sk_live_/) })

    const listed = await as(request(server).get('/me/api-keys'))
    expect(listed.body.keys.map((k: { label: string }) => k.label)).toEqual(['admin', 'rotated'])

    const foreign = await as(request(server).delete(`/me/api-keys/${theirs.keyId}`))
    const unknown = await as(request(server).delete('/me/api-keys/AAAAAAAAAAAA'))
    expect(foreign.status).toBe(404)
    expect(foreign.text).toBe(unknown.text)
    expect((await as(request(server).delete(`/me/api-keys/${created.body.keyId}`))).status).toBe(204)

    const badJson = await as(request(server).post('/me/api-keys')).set('content-type', 'application/json').send('{"label":')
    expect(badJson.status).toBe(400)
    expect(badJson.body.error).toBe('invalid_request')
    const wrongMethod = await as(request(server).put('/me/tenant'))
    expect(wrongMethod.status).toBe(405)
    expect(wrongMethod.body.error).toBe('method_not_allowed')
    auth.authenticator.close()
  })
})
