import Router from '@koa/router'
import { createKeyManager, MemoryKeyStore } from '@saiku/core'
import Koa from 'koa'
import request from 'supertest'
import { describe, expect, it } from 'vitest'
import { saikuAuth, saikuErrors } from './index.js'

// @koa/router's allowedMethods() answers a 405 in text, or throws one without its Allow:
// saikuErrors() answers it in JSON with Allow (RFC 9110 §15.5.6), as every other error.

async function appWith(allowedMethods: Parameters<Router['allowedMethods']>[0]) {
  const store = new MemoryKeyStore()
  store.putTenant({
    tenantId: 't-1',
    tenantSlug: 'acme',
    tier: 'team',
    connectionName: 'w',
    subscription: { status: 'active' },
  })
  const { key } = await createKeyManager(store).create('t-1', { label: 'agent' })
  const router = new Router()
  router.get('/items', (ctx) => {
    ctx.body = { items: [] }
  })
  router.put('/items/:id', (ctx) => {
    ctx.status = 204
  })
  router.get('/teapot', (ctx) => {
    ctx.throw(418, 'short and stout', {
      headers: { 'X-Reason': 'teapot', 'Content-Length': '99999', 'X-Bad': 'a\r\nInjected: 1', 'Retry-After': 7 },
    })
  })
  router.get('/gone', (ctx) => {
    ctx.throw(405, { headers: { Allow: 'DELETE' } })
  })
  const app = new Koa()
  app.use(saikuErrors())
  app.use(saikuAuth(store))
  app.use(router.routes())
  app.use(router.allowedMethods(allowedMethods))
  return { app: app.callback(), auth: `Bearer ${key}` }
}

describe.each([
  ['allowedMethods()', undefined],
  ['allowedMethods({ throw: true })', { throw: true }],
])('saikuErrors() with @koa/router %s', (_name, options) => {
  it('answers a method the path does not serve with the JSON 405 and its Allow', async () => {
    const { app, auth } = await appWith(options)
    const res = await request(app).post('/items').set('authorization', auth)
    expect(res.status).toBe(405)
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8')
    expect(res.body).toEqual({ error: 'method_not_allowed', message: 'This method is not allowed on this resource.' })
    expect(res.headers.allow).toBe('HEAD, GET')
    const put = await request(app).delete('/items/7').set('authorization', auth)
    expect(put.status).toBe(405)
    expect(put.headers.allow).toBe('PUT')
    expect(put.body.error).toBe('method_not_allowed')
  })

  it('still answers OPTIONS with 200 and Allow, and the routes as before', async () => {
    const { app, auth } = await appWith(options)
    const res = await request(app).options('/items').set('authorization', auth)
    expect(res.status).toBe(200)
    expect(res.headers.allow).toBe('HEAD, GET')
    expect((await request(app).get('/items').set('authorization', auth)).body).toEqual({ items: [] })
    const missing = await request(app).get('/nothing').set('authorization', auth)
    expect(missing.status).toBe(404)
    expect(missing.body.error).toBe('not_found')
  })
})

describe('saikuErrors() on Koa, a thrown error’s headers', () => {
  it('are kept, as Koa keeps them, except the body’s own and any Node would refuse', async () => {
    const { app, auth } = await appWith(undefined)
    const res = await request(app).get('/teapot').set('authorization', auth)
    expect(res.status).toBe(400)
    expect(res.body.error).toBe('invalid_request')
    expect(res.headers['x-reason']).toBe('teapot')
    expect(res.headers['retry-after']).toBe('7')
    expect(res.headers['content-length']).toBe(String(Buffer.byteLength(res.text)))
    expect(res.headers['x-bad']).toBeUndefined()
    expect(res.headers.injected).toBeUndefined()
  })

  it('keep the Allow a thrown 405 carries', async () => {
    const { app, auth } = await appWith(undefined)
    const res = await request(app).get('/gone').set('authorization', auth)
    expect(res.status).toBe(405)
    expect(res.headers.allow).toBe('DELETE')
    expect(res.body.error).toBe('method_not_allowed')
  })
})
