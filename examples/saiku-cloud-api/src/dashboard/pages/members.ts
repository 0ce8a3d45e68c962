import type { Request, RequestHandler, Response, Router } from 'express'
import { SaikuHttpError } from '@saiku/core'
import {
  acceptInvitation,
  changeRole,
  inviteMember,
  memberOfTenant,
  openInvitation,
  removeMember,
  revokeInvitation,
} from '../members.js'
import type { DashboardContext } from '../shared/context.js'
import { form } from '../shared/forms.js'
import { PasswordGate } from '../shared/password-gate.js'
import { actor } from '../shared/roles.js'
import { takeFlash } from '../shared/session.js'
import { ROLES } from '../store/index.js'

const NO_SUCH_MEMBER = 'There is no member with this ID in your tenant.'
const SPENT_LINK =
  'This sign-up link is not valid: it was used already, withdrawn, or it expired (a link works once, for 24 hours). Ask an admin of your team for a new one.'

/** Sign-ups hashing a password at once (64 MiB each, see passwords.ts), and how many may wait; past that, 503. */
const SIGN_UP_CONCURRENCY = 1
const SIGN_UP_QUEUE_LENGTH = 4
/** Of those places, the most one tenant's sign-ups hold at once: one tenant cannot fill the queue every tenant shares. */
const SIGN_UP_PLACES_PER_TENANT = 2
/** Retry-After when sign-ups are all busy: a few hashes' time. */
const BUSY_RETRY_AFTER_SECONDS = 2

/** What the invitation page and the sign-up page say of a role. */
const ROLE_WORDS: Record<string, string> = {
  admin: 'Admin: manages keys, billing and members',
  viewer: 'Viewer: sees keys, usage, billing and activity',
}

/**
 * The Members page (the list, invitations, role changes, removals) and the sign-up page an invitation's link
 * opens. Every change a member makes goes through `mutation`, the one list of checks they all share.
 */
export function registerMembers(router: Router, ctx: DashboardContext): void {
  const { store, dashboard, logger, clock, page, signedIn, verified, adminOnly, render, errorPage } = ctx
  const { foreignOrigin, refuseOrigin, originOf } = ctx
  /** Every member mutation: a form from this site, with its session's token, by an admin. */
  const mutation: readonly RequestHandler[] = [...page, form, verified, adminOnly]
  /** Adding a member, changing a role or removing one also asks for the password (and code) once it is 10 minutes old. */
  const sensitive: readonly RequestHandler[] = [...mutation, ctx.requireRecentAuth]
  // Whoever holds a link could send it many times at once, each a password hash: the hashes wait their turn in a
  // short queue, and a link already being used in this process is refused at once rather than hashed again. One
  // tenant's links hold at most a few places of that queue, so its flood leaves room for everyone else's.
  const signUpGate = new PasswordGate({ concurrency: SIGN_UP_CONCURRENCY, queueLength: SIGN_UP_QUEUE_LENGTH })
  const signingUp = new Set<string>()
  const placesByTenant = new Map<string, number>()

  async function membersPage(req: Request, res: Response, status: number, error: string | null, values = {}) {
    const { tenant, member: me } = req.dashboard!
    const [members, invitations] = await Promise.all([
      dashboard.listMembers(tenant.tenantId),
      dashboard.listInvitations(tenant.tenantId, new Date(clock())),
    ])
    const admins = members.filter((m) => m.role === 'admin').length
    render(res, status, 'members', {
      title: 'Members',
      members: members.map((m) => ({
        memberId: m.memberId,
        email: m.email,
        role: m.role,
        createdAt: m.createdAt,
        isMe: m.memberId === me.memberId,
        // The page offers no change the rule would refuse; the store refuses it all the same.
        lastAdmin: m.role === 'admin' && admins <= 1,
      })),
      invitations,
      roles: ROLES,
      roleWords: ROLE_WORDS,
      error,
      values: { email: '', role: 'viewer', ...values },
      notice: error === null ? await takeFlash(dashboard, req) : null,
    })
  }

  router.get('/members', ...page, signedIn, (req, res, next) => {
    membersPage(req, res, 200, null).catch(next)
  })

  /** A refusal of the member rules as a page: a bad email or role on the form, the last admin as a conflict. */
  const refused = (req: Request, res: Response, error: unknown, values: Record<string, string> = {}) => {
    if (!(error instanceof SaikuHttpError)) throw error
    if (error.wireCode === 'invalid_request' || (error.wireCode === 'conflict' && values.email !== undefined))
      return membersPage(req, res, error.wireCode === 'conflict' ? 409 : 400, error.message, values)
    if (error.wireCode === 'not_found') return errorPage(res, 404, 'No such member', NO_SUCH_MEMBER)
    if (error.wireCode === 'conflict') return errorPage(res, 409, 'Not changed', error.message)
    throw error
  }

  router.post('/members/invite', ...sensitive, (req, res, next) => {
    const body = req.body as Record<string, unknown>
    const email = typeof body.email === 'string' ? body.email.slice(0, 300) : ''
    const role = typeof body.role === 'string' ? body.role.slice(0, 40) : ''
    const { tenant } = req.dashboard!
    ;(async () => {
      let created
      try {
        created = await inviteMember(dashboard, tenant, { email, role }, actor(req), clock())
      } catch (error) {
        return await refused(req, res, error, {
          email,
          role: (ROLES as readonly string[]).includes(role) ? role : 'viewer',
        })
      }
      logger.info({ msg: 'member invited', tenantId: tenant.tenantId, role: created.invitation.role, by: 'dashboard' })
      // The link is in this response only (no-store): never in a log, a later page or a URL the server logs.
      const link = `${originOf(req)}/join?token=${created.token}`
      render(res, 201, 'invitation-created', {
        title: 'Invitation created',
        invitation: created.invitation,
        roleWords: ROLE_WORDS,
        link,
      })
    })().catch(next)
  })

  router.post('/members/invitations/:invitationId/revoke', ...mutation, (req, res, next) => {
    const { tenant, session } = req.dashboard!
    ;(async () => {
      let revoked
      try {
        revoked = await revokeInvitation(dashboard, tenant.tenantId, String(req.params.invitationId), actor(req))
      } catch (error) {
        if (error instanceof SaikuHttpError && error.wireCode === 'not_found')
          return errorPage(
            res,
            404,
            'No such invitation',
            'There is no pending invitation with this ID in your tenant.',
          )
        throw error
      }
      await dashboard.setFlash(
        session.sessionDigest,
        `The invitation of ${revoked.email} is withdrawn: its link no longer works.`,
      )
      res.redirect(303, '/members')
    })().catch(next)
  })

  router.post('/members/:memberId/role', ...sensitive, (req, res, next) => {
    const { tenant, session, member: me } = req.dashboard!
    const role = (req.body as Record<string, unknown>).role
    ;(async () => {
      const member = await memberOfTenant(dashboard, tenant.tenantId, String(req.params.memberId))
      if (member === null) return errorPage(res, 404, 'No such member', NO_SUCH_MEMBER)
      let result
      try {
        result = await changeRole(dashboard, member, typeof role === 'string' ? role.slice(0, 40) : '', actor(req))
      } catch (error) {
        return await refused(req, res, error)
      }
      const who = member.memberId === me.memberId ? 'You are' : `${member.email} is`
      await dashboard.setFlash(
        session.sessionDigest,
        result.changed ? `${who} now ${result.member.role}.` : `${who} ${result.member.role} already.`,
      )
      res.redirect(303, '/members')
    })().catch(next)
  })

  router.post('/members/:memberId/remove', ...sensitive, (req, res, next) => {
    const { tenant, session, member: me } = req.dashboard!
    ;(async () => {
      const member = await memberOfTenant(dashboard, tenant.tenantId, String(req.params.memberId))
      if (member === null) return errorPage(res, 404, 'No such member', NO_SUCH_MEMBER)
      if ((req.body as Record<string, unknown>).confirm !== 'yes')
        return render(res, 200, 'member-remove', {
          title: 'Remove member',
          member,
          isMe: member.memberId === me.memberId,
        })
      try {
        await removeMember(dashboard, member, actor(req))
      } catch (error) {
        return await refused(req, res, error)
      }
      logger.info({ msg: 'member removed', tenantId: tenant.tenantId, by: 'dashboard' })
      // Removing yourself ends this session too: the sign-in page is what is left.
      if (member.memberId === me.memberId) return res.redirect(303, '/sign-in')
      await dashboard.setFlash(session.sessionDigest, `${member.email} is removed; their sessions have ended.`)
      res.redirect(303, '/members')
    })().catch(next)
  })

  // A reload or Enter in the address bar on a form's URL asks for it by GET: back to the page the form is on.
  for (const path of ['/members/invite', '/members/invitations/:id/revoke', '/members/:id/role', '/members/:id/remove'])
    router.get(path, ...page, signedIn, (_req, res) => res.redirect(303, '/members'))

  // The sign-up page of an invitation's link. The token is in the query, which the request log leaves out.
  async function joinPage(req: Request, res: Response, token: string, status: number, error: string | null) {
    const invitation = await openInvitation(dashboard, token, clock())
    if (invitation === null) return errorPage(res, 404, 'Invitation not valid', SPENT_LINK)
    const tenant = await store.findTenant(invitation.tenantId)
    render(res, status, 'join', {
      title: 'Join your team',
      invitation,
      tenantSlug: tenant?.tenantSlug ?? '',
      roleWords: ROLE_WORDS,
      token,
      error,
    })
  }

  router.get('/join', ...page, (req, res, next) => {
    const token = typeof req.query.token === 'string' ? req.query.token : ''
    joinPage(req, res, token, 200, null).catch(next)
  })

  router.post('/join', ...page, (req, res, next) => {
    // No session to bind a token to: the link's own secret is the form's, and a form from another site is refused.
    const foreign = foreignOrigin(req)
    if (foreign !== null) return refuseOrigin(req, res, foreign)
    form(req, res, (parseError?: unknown) => {
      if (parseError !== undefined)
        return errorPage(res, 400, 'Bad request', 'That form could not be read. Open the sign-up link again.')
      const body = req.body as Record<string, unknown> | undefined
      const token = typeof body?.token === 'string' ? body.token : ''
      const password = typeof body?.password === 'string' ? body.password : ''
      const confirm = typeof body?.confirm === 'string' ? body.confirm : ''
      ;(async () => {
        const invitation = await openInvitation(dashboard, token, clock())
        if (invitation === null) return errorPage(res, 404, 'Invitation not valid', SPENT_LINK)
        if (password !== confirm)
          return joinPage(req, res, token, 400, 'The two passwords differ. Type the same password twice.')
        if (signingUp.has(token))
          return errorPage(
            res,
            409,
            'Invitation in use',
            'This sign-up link is being used right now. If that does not finish, try again in a moment.',
          )
        const { tenantId } = invitation
        const held = placesByTenant.get(tenantId) ?? 0
        const accepted =
          held >= SIGN_UP_PLACES_PER_TENANT
            ? null
            : signUpGate.run(() => acceptInvitation(dashboard, token, password, req.ip ?? null, clock()))
        if (accepted === null) {
          res.setHeader('retry-after', String(BUSY_RETRY_AFTER_SECONDS))
          return errorPage(res, 503, 'Busy', 'Sign-up is busy right now. Try again in a few seconds.')
        }
        signingUp.add(token)
        placesByTenant.set(tenantId, held + 1)
        let member
        try {
          member = (await accepted).value
        } catch (error) {
          if (error instanceof SaikuHttpError && error.wireCode === 'invalid_request')
            return joinPage(req, res, token, 400, error.message)
          if (error instanceof SaikuHttpError && error.wireCode === 'conflict')
            return errorPage(res, 409, 'Account not created', error.message)
          throw error
        } finally {
          signingUp.delete(token)
          const left = (placesByTenant.get(tenantId) ?? 1) - 1
          if (left > 0) placesByTenant.set(tenantId, left)
          else placesByTenant.delete(tenantId)
        }
        // Used by another submission meanwhile: one of them made the account.
        if (member === null) return errorPage(res, 404, 'Invitation not valid', SPENT_LINK)
        logger.info({ msg: 'member joined', tenantId: member.tenantId, role: member.role })
        render(res, 201, 'joined', { title: 'Account created', email: member.email })
      })().catch(next)
    })
  })
}
