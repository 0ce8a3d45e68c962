import express from 'express'
import { saikuAuth, type KeyStore } from '@saiku/express'

/** Limits reported, not enforced, for the starter tier and one tenant; every key still checked. */
export function rollOut(store: KeyStore, log: (line: object) => void): express.Express {
  const app = express()
  app.use(
    saikuAuth(store, {
      reportOnly: { limits: { tiers: ['starter'], tenants: ['81e301f2-5f0b-4c3e-9a57-3d1c2b4a6e70'] } },
      onDecision: (event) => {
        if (!event.enforced) log({ msg: 'would refuse', status: event.status, reason: event.reason, tenantId: event.tenantId })
      },
    }),
  )
  app.get('/me/tenant', (req, res) => {
    // Past its limits, the request is here anyway: its counts say so.
    res.json({ ...req.saiku!.tenant, overLimit: req.saiku!.rateLimit?.admitted === false })
  })
  return app
}

/** Authentication reported too: a request whose key fails goes on, without a principal. */
export function dryRun(store: KeyStore): express.Express {
  const app = express()
  app.use(saikuAuth(store, { reportOnly: { limits: true, authentication: true } }))
  app.get('/me/tenant', (req, res) => {
    if (req.saikuUnverified !== undefined) {
      // { status: 401, code: 'unauthorized', reason: 'unknown_key' }: what it would have been told.
      res.json({ tenantId: null, wouldBe: req.saikuUnverified })
      return
    }
    res.json({ tenantId: req.saiku!.tenant.tenantId })
  })
  return app
}
