import {
  createKeyManager,
  MemoryKeyStore,
  type ApiKeyRecord,
  type KeyStore,
  type SaikuOptions,
  type TenantRecord,
} from '@saiku/core'
import { saikuAuth as expressAuth, saikuErrors as expressErrors } from '@saiku/express'
import { saikuAuth as koaAuth, saikuErrors as koaErrors } from '@saiku/koa'
import express from 'express'
import Koa from 'koa'
import request from 'supertest'
import { afterEach, describe, expect, it, vi } from 'vitest'

// The middleware's own 5xx (a store that throws, a tenant on an unknown tier) are logged
// by default, once per distinct error per minute; saikuErrors() logs each error it answers with a 5xx.

// A database that refuses connections.
class ThrowingStore extends MemoryKeyStore {
  override findKey(): Promise<ApiKeyRecord | null> {
    return Promise.reject(Object.assign(new Error('connect ECONNREFUSED password=hunter2'), { code: 'ECONNREFUSED' }))
  }
}

// A tenant written on a tier the middleware was not configured with.
class UnknownTierStore extends MemoryKeyStore {
  override async findTenant(tenantId: string): Promise<TenantRecord | null> {
    const tenant = await super.findTenant(tenantId)
    return tenant === null ? null : { ...tenant, tier: 'gold' }
  }
}

async function seeded<S extends MemoryKeyStore>(Store: new () => S): Promise<{ store: S; key: string }> {
  const store = new Store()
  store.putTenant({
    tenantId: 't-1',
    tenantSlug: 'acme',
    tier: 'team',
    connectionName: 'w',
    subscription: { status: 'active' },
  })
  const { key } = await createKeyManager(store).create('t-1', { label: 'agent' })
  return { store, key }
}

const apps = {
  express: (store: KeyStore, options?: SaikuOptions) => {
    const app = express()
    app.use(expressAuth(store, options))
    app.get('/me', (_req, res) => void res.json({ ok: true }))
    app.get('/boom', () => {
      throw new Error('handler broke')
    })
    app.use(expressErrors())
    return app
  },
  koa: (store: KeyStore, options?: SaikuOptions) => {
    const app = new Koa()
    app.use(koaErrors())
    app.use(koaAuth(store, options))
    app.use((ctx) => {
      if (ctx.path === '/boom') throw new Error('handler broke')
      ctx.body = { ok: true }
    })
    return app.callback()
  },
}

afterEach(() => vi.restoreAllMocks())

describe.each(Object.entries(apps))('%s: the default onError', (_name, createApp) => {
  it('logs a store that throws once, in one line, while every request gets the JSON 503', async () => {
    const { store, key } = await seeded(ThrowingStore)
    const errors = vi.spyOn(console, 'error').mockImplementation(() => {})
    const app = createApp(store)
    for (let i = 0; i < 5; i++) {
      const res = await request(app).get('/me').set('authorization', `Bearer ${key}`)
      expect(res.status).toBe(503)
      expect(res.body.error).toBe('service_unavailable')
    }
    expect(errors).toHaveBeenCalledTimes(1)
    const line = String(errors.mock.calls[0]![0])
    expect(line).toContain('ECONNREFUSED')
    expect(line).not.toContain('\n')
    expect(line).not.toContain(key)
    expect(line).not.toContain('hunter2')
  })

  it('logs a tenant on an unknown tier once, while its requests get the JSON 500', async () => {
    const { store, key } = await seeded(UnknownTierStore)
    const errors = vi.spyOn(console, 'error').mockImplementation(() => {})
    const app = createApp(store)
    for (let i = 0; i < 3; i++) {
      const res = await request(app).get('/me').set('authorization', `Bearer ${key}`)
      expect(res.status).toBe(500)
      expect(res.body.error).toBe('internal_error')
    }
    expect(errors).toHaveBeenCalledTimes(1)
    expect(String(errors.mock.calls[0]![0])).toContain('gold')
  })

  it('logs nothing with onError: false, and calls a hook of the user’s instead of logging', async () => {
    const { store, key } = await seeded(ThrowingStore)
    const errors = vi.spyOn(console, 'error').mockImplementation(() => {})
    for (const onError of [false, null] as const) {
      const res = await request(createApp(store, { onError })).get('/me').set('authorization', `Bearer ${key}`)
      expect(res.status).toBe(503)
    }
    const seen: Error[] = []
    const app = createApp(store, { onError: (error) => void seen.push(error) })
    await request(app).get('/me').set('authorization', `Bearer ${key}`)
    await request(app).get('/me').set('authorization', `Bearer ${key}`)
    expect(seen).toHaveLength(2)
    expect(errors).not.toHaveBeenCalled()
  })

  it('saikuErrors() logs every 5xx it writes', async () => {
    const { store, key } = await seeded(MemoryKeyStore)
    const errors = vi.spyOn(console, 'error').mockImplementation(() => {})
    // Koa's default reports app errors through console.error too.
    const app = createApp(store)
    for (let i = 0; i < 3; i++)
      expect((await request(app).get('/boom').set('authorization', `Bearer ${key}`)).status).toBe(500)
    expect(errors.mock.calls.filter((call) => call.some((arg) => String(arg).includes('handler broke')))).toHaveLength(
      3,
    )
  })
})

it('a misconfigured onError throws at construction with the option named', async () => {
  const { store } = await seeded(MemoryKeyStore)
  expect(() => expressAuth(store, { onError: 'console' as never })).toThrow(
    'onError: expected a function, or false (or null) for no log, got "console"',
  )
  expect(() => koaAuth(store, { onError: 0 as never })).toThrow(
    'onError: expected a function, or false (or null) for no log, got 0',
  )
})
