import type { NextFunction, Request, Response } from 'express'
import express5 from 'express'
import express4 from 'express4'
import { ownedByTenant, requirePermission, saikuAuth, saikuErrors, SaikuHttpError } from '@saiku/express'
import type { AdapterHarness } from './harness.js'

function expressHarness(name: string, express: typeof express5): AdapterHarness {
  return {
    name,
    createApp(store, options, fixtures, settings = {}) {
      const app = express()
      app.set('trust proxy', settings.trustProxy === true)
      const auth = saikuAuth(store, options)
      // What has no principal to ask challenges the authenticator's realm.
      const { realm } = options
      const routes = settings.mountAt === undefined ? app : express.Router()
      routes.use(auth)
      if (settings.mountTwice === true) routes.use(auth)
      if (settings.secondInstance === true) routes.use(express.Router().use(saikuAuth(store, options)))
      routes.get('/me/tenant', (req, res) => {
        fixtures.hits.tenant++
        res.json(req.saiku!.tenant)
      })
      routes.options('/me/tenant', (_req, res) => {
        fixtures.hits.preflight++
        res.status(204).end()
      })
      routes.get('/me/whoami', (req, res) => {
        res.json({
          tenantId: req.saiku?.tenant.tenantId ?? null,
          overLimit: req.saiku?.rateLimit?.admitted === false,
          unverified: req.saikuUnverified ?? null,
        })
      })
      routes.get('/me/billing', (req, res) => {
        res.json({ status: req.saiku!.subscription.status })
      })
      routes.get('/me/api-keys', requirePermission('keys:read', { realm }), async (req, res, next) => {
        auth.authenticator.keys.list(req.saiku!.tenant.tenantId).then((keys) => res.json({ keys }), next)
      })
      routes.delete('/me/api-keys/:keyId', requirePermission('keys:write', { realm }), (req, res, next) => {
        auth.authenticator.keys
          .revoke(req.saiku!.tenant.tenantId, String(req.params.keyId))
          .then((revoked) => {
            if (!revoked) throw new SaikuHttpError('not_found')
            res.status(204).end()
          })
          .catch(next)
      })
      routes.get('/me/projects/:id', (req, res) => {
        res.json(ownedByTenant(req.saiku!, fixtures.projects.get(String(req.params.id))))
      })
      routes.get('/me/reauthenticate', () => {
        throw new SaikuHttpError('unauthorized')
      })
      routes.get('/me/boom', (_req, res) => {
        res.setHeader('content-length', '5')
        res.setHeader('etag', '"x"')
        throw new Error('database password is hunter2')
      })
      routes.get('/me/fail-after-write', (_req, res) => {
        res.status(200).write('{"partial":')
        throw new Error('failed after the response started')
      })
      if (settings.mountAt !== undefined) app.use(settings.mountAt, routes)
      app.use((error: unknown, _req: Request, _res: Response, next: NextFunction) => {
        fixtures.errors.push(error)
        next(error)
      })
      app.use(saikuErrors({ realm, onError: settings.errorsOnError ?? (() => {}) }))
      return { handler: app, authenticator: auth.authenticator }
    },
  }
}

export const express5Harness: AdapterHarness = expressHarness('express 5', express5)
export const express4Harness: AdapterHarness = expressHarness('express 4', express4)
