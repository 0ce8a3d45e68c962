import type { Request, Response, Router } from 'express'
import type { DashboardContext } from '../shared/context.js'
import { form } from '../shared/forms.js'
import { actor } from '../shared/roles.js'
import { takeFlash } from '../shared/session.js'
import { WebhookInputError, type EndpointStore } from '../../webhooks/endpoints.js'
import { WEBHOOK_EVENT_TYPES, WEBHOOK_EVENTS } from '../../webhooks/events.js'

/**
 * The Webhooks page: endpoints with their state, the delivery log of each, and for admins Add endpoint (its secret
 * shown once), Rotate secret, Send test event, Redeliver and Remove. Every change of an endpoint is in this module.
 */
export function registerWebhooks(router: Router, ctx: DashboardContext, endpoints: EndpointStore): void {
  const { dashboard, logger, page, signedIn, verified, adminOnly, render, errorPage } = ctx
  const catalogue = WEBHOOK_EVENT_TYPES.map((type) => ({ type, description: WEBHOOK_EVENTS[type] }))
  const noSuchEndpoint = (res: Response) =>
    errorPage(res, 404, 'No such endpoint', 'There is no webhook endpoint with this ID in your tenant.')

  async function listPage(req: Request, res: Response, status: number, error: string | null, values = blank()) {
    const list = await endpoints.list(req.dashboard!.tenant.tenantId)
    render(res, status, 'webhooks', {
      title: 'Webhooks',
      endpoints: list,
      catalogue,
      error,
      values,
      notice: await takeFlash(dashboard, req),
    })
  }
  const blank = () => ({ url: '', description: '', events: [] as string[] })
  const flash = (req: Request, message: string) => dashboard.setFlash(req.dashboard!.session.sessionDigest, message)

  router.get('/webhooks', ...page, signedIn, (req, res, next) => {
    listPage(req, res, 200, null).catch(next)
  })

  router.post('/webhooks', ...page, form, verified, adminOnly, ctx.requireRecentAuth, (req, res, next) => {
    const body = req.body as Record<string, unknown>
    const { tenant } = req.dashboard!
    ;(async () => {
      const url = typeof body.url === 'string' ? body.url.trim() : ''
      const description = typeof body.description === 'string' ? body.description.trim() : ''
      const picked = body.events === undefined ? [] : Array.isArray(body.events) ? body.events : [body.events]
      const events = picked.filter((type): type is string => typeof type === 'string')
      const values = { url, description, events }
      let added
      try {
        added = await endpoints.add(tenant.tenantId, {
          url,
          events: events.length === 0 ? ['*'] : events,
          ...(description === '' ? {} : { description }),
        })
      } catch (error) {
        if (error instanceof WebhookInputError) return listPage(req, res, 400, sentence(error.message), values)
        throw error
      }
      const endpointId = added.endpoint.endpointId
      await dashboard.recordActivity({
        tenantId: tenant.tenantId,
        ...actor(req),
        action: 'webhook.added',
        target: endpointId,
      })
      logger.info({ msg: 'webhook added', tenantId: tenant.tenantId, endpointId })
      // The secret is in this response only (no-store), never in a URL, a log or a later page.
      render(res, 201, 'webhook-secret', { title: 'Endpoint added', endpoint: added.endpoint, secret: added.secret })
    })().catch(next)
  })

  router.get('/webhooks/:endpointId', ...page, signedIn, (req, res, next) => {
    ;(async () => {
      const tenantId = req.dashboard!.tenant.tenantId
      const endpoint = await endpoints.find(tenantId, String(req.params.endpointId))
      if (endpoint === null) return noSuchEndpoint(res)
      const deliveries = await endpoints.deliveries(tenantId, endpoint.endpointId)
      render(res, 200, 'webhook-log', {
        title: 'Delivery log',
        endpoint,
        deliveries,
        notice: await takeFlash(dashboard, req),
      })
    })().catch(next)
  })

  // Rotating and removing are confirmed on a page that names the endpoint.
  router.post(
    '/webhooks/:endpointId/rotate-secret',
    ...page,
    form,
    verified,
    adminOnly,
    ctx.requireRecentAuth,
    (req, res, next) => {
      const { tenant } = req.dashboard!
      ;(async () => {
        const endpoint = await endpoints.find(tenant.tenantId, String(req.params.endpointId))
        if (endpoint === null) return noSuchEndpoint(res)
        if ((req.body as Record<string, unknown>).confirm !== 'yes')
          return render(res, 200, 'webhook-confirm', { title: 'Rotate secret', endpoint, action: 'rotate-secret' })
        const rotated = await endpoints.rotateSecret(tenant.tenantId, endpoint.endpointId)
        if (rotated === null) return noSuchEndpoint(res)
        await dashboard.recordActivity({
          tenantId: tenant.tenantId,
          ...actor(req),
          action: 'webhook.secret_rotated',
          target: endpoint.endpointId,
        })
        logger.info({ msg: 'webhook secret rotated', tenantId: tenant.tenantId, endpointId: endpoint.endpointId })
        render(res, 200, 'webhook-secret', {
          title: 'Secret rotated',
          endpoint: rotated.endpoint,
          secret: rotated.secret,
        })
      })().catch(next)
    },
  )

  router.post('/webhooks/:endpointId/remove', ...page, form, verified, adminOnly, (req, res, next) => {
    const { tenant } = req.dashboard!
    ;(async () => {
      const endpoint = await endpoints.find(tenant.tenantId, String(req.params.endpointId))
      if (endpoint === null) return noSuchEndpoint(res)
      if ((req.body as Record<string, unknown>).confirm !== 'yes')
        return render(res, 200, 'webhook-confirm', { title: 'Remove endpoint', endpoint, action: 'remove' })
      if (!(await endpoints.remove(tenant.tenantId, endpoint.endpointId))) return noSuchEndpoint(res)
      await dashboard.recordActivity({
        tenantId: tenant.tenantId,
        ...actor(req),
        action: 'webhook.removed',
        target: endpoint.endpointId,
      })
      logger.info({ msg: 'webhook removed', tenantId: tenant.tenantId, endpointId: endpoint.endpointId })
      await flash(req, `Endpoint ${endpoint.endpointId} removed.`)
      res.redirect(303, '/webhooks')
    })().catch(next)
  })

  router.post('/webhooks/:endpointId/test', ...page, form, verified, adminOnly, (req, res, next) => {
    const { tenant } = req.dashboard!
    ;(async () => {
      const endpoint = await endpoints.find(tenant.tenantId, String(req.params.endpointId))
      if (endpoint === null) return noSuchEndpoint(res)
      if (endpoint.state === 'disabled')
        return errorPage(res, 409, 'Endpoint disabled', 'This endpoint answered 410 Gone; remove it and add it again.')
      await endpoints.sendTestEvent(tenant.tenantId, endpoint.endpointId)
      await flash(req, `Test event queued for ${endpoint.endpointId}; it appears in the log once sent.`)
      res.redirect(303, `/webhooks/${endpoint.endpointId}`)
    })().catch(next)
  })

  router.post(
    '/webhooks/:endpointId/deliveries/:deliveryId/redeliver',
    ...page,
    form,
    verified,
    adminOnly,
    (req, res, next) => {
      const { tenant } = req.dashboard!
      ;(async () => {
        const endpoint = await endpoints.find(tenant.tenantId, String(req.params.endpointId))
        if (endpoint === null) return noSuchEndpoint(res)
        const deliveryId = String(req.params.deliveryId)
        if (endpoint.state === 'disabled')
          return errorPage(
            res,
            409,
            'Endpoint disabled',
            'This endpoint answered 410 Gone; remove it and add it again.',
          )
        if (
          !deliveryId.startsWith(`${endpoint.endpointId}_`) ||
          !(await endpoints.redeliver(tenant.tenantId, deliveryId))
        )
          return errorPage(res, 404, 'No such delivery', 'There is no such delivery, or it is being sent now.')
        await flash(req, 'Delivery queued again, with the same webhook-id.')
        res.redirect(303, `/webhooks/${endpoint.endpointId}`)
      })().catch(next)
    },
  )

  // A reload on a form's URL asks for it by GET: back to the page the form is on.
  for (const action of ['rotate-secret', 'remove', 'test'])
    router.get(`/webhooks/:endpointId/${action}`, ...page, signedIn, (_req, res) => res.redirect(303, '/webhooks'))
}

/** A message from the endpoint rules ("url must use https.") as a sentence for the form. */
const sentence = (message: string): string => {
  const named = message.replace(/^url\b/, 'The URL').replace(/^description\b/, 'The description')
  return `${named[0]!.toUpperCase()}${named.slice(1)}`
}
