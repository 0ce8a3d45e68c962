import type { Request, RequestHandler } from 'express'
import type { SaikuPrincipal, TenantRecord } from '@saiku/core'
import type { Renderer } from './render.js'

/** Lets an admin through; a viewer gets a page saying what their role allows. */
export const createAdminOnly =
  (errorPage: Renderer['errorPage']): RequestHandler =>
  (req, res, next) => {
    if (req.dashboard?.member.role === 'admin') return next()
    errorPage(
      res,
      403,
      'Not allowed',
      'Your role is viewer: you can see keys and billing, but only an admin can change them.',
    )
  }

/** The signed-in member, as the Activity log names who did something. */
export const actor = (req: Request) => ({
  actorType: 'member' as const,
  actor: req.dashboard!.member.email,
  ip: req.ip ?? null,
})

/** The signed-in tenant as the JSON API's handlers take it, so a page and the API share one code path. */
export const asPrincipal = (tenant: TenantRecord) => ({ tenant: { tenantId: tenant.tenantId } }) as SaikuPrincipal
