import express from 'express'
import { MemoryKeyStore, saikuAuth, saikuErrors } from '@saiku/express'

const tenant = { tenantId: 't-acme', tenantSlug: 'acme', tier: 'starter', connectionName: 'warehouse', subscription: { status: 'active' } } as const
const auth = saikuAuth(new MemoryKeyStore({ tenants: [tenant] })) // your own KeyStore reads your database
const { key } = await auth.authenticator.keys.create(tenant.tenantId, { label: 'my-agent' }) // the secret, shown once
const app = express()
app.use(auth) // 401 without a valid key, 429 past the tenant's limits
app.get('/me/tenant', (req, res) => { res.json(req.saiku!.tenant) })
app.use(saikuErrors()) // last: unknown routes and thrown errors as JSON
const port = Number(process.env.PORT ?? 3000)
app.listen(port, '127.0.0.1', () => console.log(`curl http://127.0.0.1:${port}/me/tenant -H "Authorization: Bearer ${key}"`))
