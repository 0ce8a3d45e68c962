import type { Request, Response, Router } from 'express'
import { isKeyId, SaikuInputError } from '@saiku/core'
import { PERMISSIONS } from '../../api.js'
import type { DashboardContext } from '../shared/context.js'
import { calendarDate, form } from '../shared/forms.js'
import { keyRows } from '../shared/render.js'
import { actor } from '../shared/roles.js'
import { NONCE, newToken } from '../shared/secrets.js'
import { takeFlash } from '../shared/session.js'

const SPENT_FORM =
  'That Create key form was already submitted or is out of date, so this submission created no key. ' +
  'If a key was created from it before, it is in the list below; its secret is shown only once.'

/** The tenant's keys: the list, Create key with its secret shown once, and Revoke behind a confirmation. */
export function registerApiKeys(router: Router, ctx: DashboardContext): void {
  const { dashboard, logger, page, signedIn, verified, adminOnly, render, errorPage } = ctx
  const keys = ctx.authenticator.keys

  router.get('/api-keys', ...page, signedIn, (req, res, next) => {
    ;(async () => {
      const list = await keys.list(req.dashboard!.tenant.tenantId)
      render(res, 200, 'api-keys', { title: 'API keys', keys: keyRows(list), notice: await takeFlash(dashboard, req) })
    })().catch(next)
  })

  async function newKeyForm(
    req: Request,
    res: Response,
    status: number,
    error: string | null,
    values: { label: string; permissions: string[]; environment: string; expires: string },
  ) {
    const nonce = newToken()
    await dashboard.addFormNonce(req.dashboard!.session.sessionDigest, nonce)
    render(res, status, 'key-new', { title: 'Create key', error, values, nonce, permissions: PERMISSIONS })
  }

  router.get('/api-keys/new', ...page, signedIn, adminOnly, (req, res, next) => {
    newKeyForm(req, res, 200, null, { label: '', permissions: [], environment: 'live', expires: '' }).catch(next)
  })

  router.post('/api-keys', ...page, form, verified, adminOnly, (req, res, next) => {
    const body = req.body as Record<string, unknown>
    const { tenant, session: current } = req.dashboard!
    ;(async () => {
      // One key per rendered form: a resubmitted one (reload, back, double click) creates nothing. The
      // server cannot tell a used form from a forgotten one, so the notice claims neither.
      const nonce = typeof body._form === 'string' ? body._form : ''
      if (!NONCE.test(nonce) || !(await dashboard.takeFormNonce(current.sessionDigest, nonce))) {
        await dashboard.setFlash(current.sessionDigest, SPENT_FORM)
        return res.redirect(303, '/api-keys')
      }
      const label = typeof body.label === 'string' ? body.label.trim() : ''
      const picked =
        body.permissions === undefined ? [] : Array.isArray(body.permissions) ? body.permissions : [body.permissions]
      const permissions = picked.filter((p): p is string => typeof p === 'string')
      const environment = body.environment === 'test' ? 'test' : 'live'
      const expires = typeof body.expires === 'string' ? body.expires : ''
      const values = { label, permissions, environment, expires }
      const unknown = permissions.filter((p) => !(PERMISSIONS as readonly string[]).includes(p))
      if (
        unknown.length > 0 ||
        (body.environment !== undefined && body.environment !== 'live' && body.environment !== 'test')
      ) {
        return newKeyForm(req, res, 400, 'Choose permissions and an environment from the lists.', {
          ...values,
          permissions: [],
        })
      }
      let expiresAt: Date | null = null
      if (expires !== '') {
        expiresAt = calendarDate(expires)
        if (expiresAt === null)
          return newKeyForm(req, res, 400, 'The expiry must be a real date, written like 2030-01-31.', values)
        if (expiresAt.getTime() <= Date.now())
          return newKeyForm(req, res, 400, 'The expiry must be a date after today.', values)
      }
      let created
      try {
        created = await keys.create(tenant.tenantId, { label, permissions, environment, expiresAt })
      } catch (error) {
        if (error instanceof SaikuInputError) {
          const message = error.message.replace(/^label/, 'The label')
          return newKeyForm(req, res, 400, message, values)
        }
        throw error
      }
      await dashboard.recordActivity({
        tenantId: tenant.tenantId,
        ...actor(req),
        action: 'key.created',
        target: created.keyId,
      })
      logger.info({ msg: 'key created', tenantId: tenant.tenantId, keyId: created.keyId, by: 'dashboard' })
      // The secret is in this response only: never in a URL, a log or a later page (no-store).
      render(res, 201, 'key-created', { title: 'Key created', created })
    })().catch(next)
  })

  router.post('/api-keys/:keyId/revoke', ...page, form, verified, adminOnly, (req, res, next) => {
    const keyId = String(req.params.keyId)
    const { tenant } = req.dashboard!
    ;(async () => {
      const key = isKeyId(keyId) ? (await keys.list(tenant.tenantId)).find((k) => k.keyId === keyId) : undefined
      // Another tenant's key gets exactly the answer of a key that does not exist.
      if (key === undefined)
        return errorPage(res, 404, 'No such key', 'There is no live key with this ID in your tenant.')
      if ((req.body as Record<string, unknown>).confirm !== 'yes')
        return render(res, 200, 'key-revoke', { title: 'Revoke key', key })
      if (!(await keys.revoke(tenant.tenantId, keyId)))
        return errorPage(res, 404, 'No such key', 'There is no live key with this ID in your tenant.')
      await dashboard.recordActivity({ tenantId: tenant.tenantId, ...actor(req), action: 'key.revoked', target: keyId })
      logger.info({ msg: 'key revoked', tenantId: tenant.tenantId, keyId, by: 'dashboard' })
      await dashboard.setFlash(req.dashboard!.session.sessionDigest, `Key ${keyId} revoked.`)
      res.redirect(303, '/api-keys')
    })().catch(next)
  })

  // A reload or Enter in the address bar on the form's URL asks for it by GET: back to the page the form is on.
  router.get('/api-keys/:keyId/revoke', ...page, signedIn, (_req, res) => res.redirect(303, '/api-keys'))
}
