import type { Response } from 'express'
import { Eta } from 'eta'
import type { ApiKeySummary } from '@saiku/core'
import { safeNext } from './redirects.js'

const NAV = [
  { href: '/', label: 'Overview' },
  { href: '/api-keys', label: 'API keys' },
  { href: '/usage', label: 'Usage' },
  { href: '/billing', label: 'Billing' },
  { href: '/members', label: 'Members' },
  { href: '/activity', label: 'Activity' },
  { href: '/webhooks', label: 'Webhooks' },
] as const

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
/** "1 Dec 2026, 14:05 UTC": one format everywhere, independent of the server's locale. */
export function formatTime(date: Date | null | undefined, never = 'Never'): string {
  if (date == null) return never
  const pad = (n: number) => String(n).padStart(2, '0')
  // No-break spaces: a narrow column breaks the line only between the date and the time.
  return `${date.getUTCDate()}\u00a0${MONTHS[date.getUTCMonth()]}\u00a0${date.getUTCFullYear()}, ${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}\u00a0UTC`
}

/** "in 23 h", "in 6 days", "in 12 min": how long until `date`, rounded down, for a key that is ending. */
export function timeLeft(date: Date, nowMs = Date.now()): string {
  const seconds = Math.max(0, Math.floor((date.getTime() - nowMs) / 1000))
  if (seconds < 60) return 'in less than a minute'
  if (seconds < 3_600) return `in ${Math.floor(seconds / 60)} min`
  if (seconds < 172_800) return `in ${Math.floor(seconds / 3_600)} h`
  return `in ${Math.floor(seconds / 86_400)} days`
}

/** A tenant's keys as the pages list them, each marked when past its expiry, and how long is left to one ending. */
export const keyRows = (list: ApiKeySummary[], nowMs = Date.now()) =>
  list.map((k) => {
    const expired = k.expiresAt !== null && k.expiresAt.getTime() <= nowMs
    return {
      ...k,
      allowedAddresses: k.allowedAddresses ?? [],
      expired,
      // A rotation's grace, or any expiry within 30 days: the list says how long the key has left.
      endsIn:
        k.expiresAt !== null && !expired && k.expiresAt.getTime() - nowMs <= 2_592_000_000
          ? timeLeft(k.expiresAt, nowMs)
          : null,
    }
  })

export interface Renderer {
  /** A page in the layout, escaped by default, with the signed-in member's name, role and CSRF token. */
  readonly render: (res: Response, status: number, view: string, data: Record<string, unknown>) => void
  readonly errorPage: (res: Response, status: number, title: string, message: string) => void
}

/** Renders the templates in `views`, a folder of `.eta` files. */
export function createRenderer(views: string): Renderer {
  const eta = new Eta({ views, cache: true, autoEscape: true })

  function render(res: Response, status: number, view: string, data: Record<string, unknown>): void {
    const req = res.req
    const signed = req.dashboard
    const html = eta.render(view, {
      ...data,
      path: req.path,
      nav: NAV,
      // Only what the layout shows: never the session's digest or the member's password hash.
      signed: signed && {
        member: { email: signed.member.email, role: signed.member.role },
        tenant: { tenantSlug: signed.tenant.tenantSlug, tier: signed.tenant.tier },
      },
      csrf: signed?.session.csrfToken ?? '',
      next: safeNext(req.query.next),
      formatTime,
      isAdmin: signed?.member.role === 'admin',
    })
    res.status(status).type('html').send(html)
  }

  return {
    render,
    errorPage: (res, status, title, message) => render(res, status, 'error', { title, message, status }),
  }
}
