import Router from '@koa/router'
import Koa from 'koa'
import { MemoryKeyStore, saikuAuth, saikuErrors } from '@saiku/koa'

const tenant = { tenantId: 't-acme', tenantSlug: 'acme', tier: 'starter', connectionName: 'warehouse', subscription: { status: 'active' } } as const
const auth = saikuAuth(new MemoryKeyStore({ tenants: [tenant] }))
const { key } = await auth.authenticator.keys.create(tenant.tenantId, { label: 'my-agent' })
const router = new Router().get('/me/tenant', (ctx) => { ctx.body = ctx.state.saiku!.tenant })
const app = new Koa().use(saikuErrors()).use(auth).use(router.routes()).use(router.allowedMethods()) // saikuErrors first
const port = Number(process.env.PORT ?? 3000)
app.listen(port, '127.0.0.1', () => console.log(`curl http://127.0.0.1:${port}/me/tenant -H "Authorization: Bearer ${key}"`))
