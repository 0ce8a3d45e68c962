import type { Request, Response, Router } from 'express'
import { isKeyId, SaikuInputError } from '@saiku/core'
import { PERMISSION_DESCRIPTIONS, PERMISSIONS } from '../../api.js'
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
    values: { label: string; permissions: string[]; environment: string; expires: string; allowed: string },
  ) {
    const nonce = newToken()
    await dashboard.addFormNonce(req.dashboard!.session.sessionDigest, nonce)
    render(res, status, 'key-new', {
      title: 'Create key',
      error,
      values,
      nonce,
      permissions: PERMISSIONS.map((name) => ({ name, description: PERMISSION_DESCRIPTIONS[name] })),
    })
  }

  router.get('/api-keys/new', ...page, signedIn, adminOnly, (req, res, next) => {
    newKeyForm(req, res, 200, null, {
      label: '',
      permissions: [],
      environment: 'live',
      expires: '',
      allowed: '',
    }).catch(next)
  })

  router.post('/api-keys', ...page, form, verified, adminOnly, (req, res, next) => {
    const body = req.body as Record<string, unknown>
    const { tenant, session: current } = req.dashboard!
    ;(async () => {
      // A live key asks for the password (and code) again when the last check is old; the confirmation
      // posts this form again, its one-time nonce still unspent.
      if (body.environment !== 'test' && !(await ctx.confirmRecentAuth(req, res))) return
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
      const allowed = typeof body.allowed === 'string' ? body.allowed : ''
      const values = { label, permissions, environment, expires, allowed }
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
        created = await keys.create(tenant.tenantId, {
          label,
          permissions,
          environment,
          expiresAt,
          allowedAddresses: addressLines(allowed),
        })
      } catch (error) {
        if (error instanceof SaikuInputError) return newKeyForm(req, res, 400, formMessage(error), values)
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

  /** One of the tenant's live keys, or undefined: another tenant's key is answered as a missing one. */
  async function liveKey(tenantId: string, keyId: string) {
    return isKeyId(keyId) ? (await keys.list(tenantId)).find((k) => k.keyId === keyId) : undefined
  }
  const noSuchKey = (res: Response) =>
    errorPage(res, 404, 'No such key', 'There is no live key with this ID in your tenant.')

  function editForm(
    req: Request,
    res: Response,
    status: number,
    key: { keyId: string },
    error: string | null,
    values: { label: string; allowed: string },
  ) {
    render(res, status, 'key-edit', { title: 'Edit key', key, error, values, clientAddress: req.ip ?? 'unknown' })
  }

  router.get('/api-keys/:keyId/edit', ...page, signedIn, adminOnly, (req, res, next) => {
    ;(async () => {
      const key = await liveKey(req.dashboard!.tenant.tenantId, String(req.params.keyId))
      if (key === undefined) return noSuchKey(res)
      editForm(req, res, 200, key, null, { label: key.label, allowed: (key.allowedAddresses ?? []).join('\n') })
    })().catch(next)
  })

  router.post('/api-keys/:keyId/edit', ...page, form, verified, adminOnly, (req, res, next) => {
    const keyId = String(req.params.keyId)
    const body = req.body as Record<string, unknown>
    const { tenant } = req.dashboard!
    ;(async () => {
      const key = await liveKey(tenant.tenantId, keyId)
      if (key === undefined) return noSuchKey(res)
      const label = typeof body.label === 'string' ? body.label.trim() : ''
      const allowed = typeof body.allowed === 'string' ? body.allowed : ''
      let updated
      try {
        updated = await keys.update(tenant.tenantId, keyId, { label, allowedAddresses: addressLines(allowed) })
      } catch (error) {
        if (error instanceof SaikuInputError)
          return editForm(req, res, 400, key, formMessage(error), { label, allowed })
        throw error
      }
      if (updated === null) return noSuchKey(res)
      await dashboard.recordActivity({ tenantId: tenant.tenantId, ...actor(req), action: 'key.updated', target: keyId })
      logger.info({ msg: 'key updated', tenantId: tenant.tenantId, keyId, by: 'dashboard' })
      await dashboard.setFlash(req.dashboard!.session.sessionDigest, `Key ${keyId} updated.`)
      res.redirect(303, '/api-keys')
    })().catch(next)
  })

  // A rotation is confirmed on a page of its own, where the grace is chosen; each page rotates once.
  router.post('/api-keys/:keyId/rotate', ...page, form, verified, adminOnly, (req, res, next) => {
    const keyId = String(req.params.keyId)
    const body = req.body as Record<string, unknown>
    const { tenant, session: current } = req.dashboard!
    ;(async () => {
      const key = await liveKey(tenant.tenantId, keyId)
      if (key === undefined) return noSuchKey(res)
      if (body.confirm !== 'yes') {
        const nonce = newToken()
        await dashboard.addFormNonce(current.sessionDigest, nonce)
        return render(res, 200, 'key-rotate', { title: 'Rotate key', key, nonce, graces: GRACES })
      }
      if (key.environment === 'live' && !(await ctx.confirmRecentAuth(req, res))) return
      const grace = GRACES.find((choice) => choice.value === body.grace)
      if (grace === undefined)
        return errorPage(res, 400, 'Choose a grace', 'Choose when the old key stops working from the list.')
      const nonce = typeof body._form === 'string' ? body._form : ''
      if (!NONCE.test(nonce) || !(await dashboard.takeFormNonce(current.sessionDigest, nonce))) {
        await dashboard.setFlash(current.sessionDigest, SPENT_ROTATION)
        return res.redirect(303, '/api-keys')
      }
      const rotated = await keys.rotate(tenant.tenantId, keyId, { graceSeconds: Number(grace.value) })
      if (rotated === null) return noSuchKey(res)
      await dashboard.recordActivity({
        tenantId: tenant.tenantId,
        ...actor(req),
        action: 'key.rotated',
        target: `${keyId} → ${rotated.keyId}`,
      })
      logger.info({ msg: 'key rotated', tenantId: tenant.tenantId, keyId, successor: rotated.keyId, by: 'dashboard' })
      // The secret is in this response only, as for Create key.
      render(res, 201, 'key-created', { title: 'Key rotated', created: rotated })
    })().catch(next)
  })
  router.get('/api-keys/:keyId/rotate', ...page, signedIn, (_req, res) => res.redirect(303, '/api-keys'))
}

/** The grace choices of the Rotate page, in seconds. */
const GRACES = [
  { value: '0', label: 'Now' },
  { value: '3600', label: 'In 1 hour' },
  { value: '86400', label: 'In 24 hours' },
  { value: '604800', label: 'In 7 days' },
] as const

const SPENT_ROTATION =
  'That Rotate form was already submitted or is out of date, so this submission rotated nothing. ' +
  'If a key was rotated from it before, its successor is in the list below; its secret is shown only once.'

/** The addresses of a form's text box: one per line or separated by commas; none is null (any address). */
function addressLines(text: string): string[] | null {
  const entries = text
    .split(/[\s,]+/)
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '')
  return entries.length === 0 ? null : entries
}

/** An input error as the form shows it: the field in words. */
function formMessage(error: SaikuInputError): string {
  return error.message
    .replace(/^label/, 'The label')
    .replace(/^allowedAddresses\[(\d+)\]/, (_m, i: string) => `Allowed address ${Number(i) + 1}`)
    .replace(/^allowedAddresses/, 'Allowed addresses')
}
