import { parseCookie, stringifySetCookie } from 'cookie'
import type { Request, Response } from 'express'

/** The dashboard's address and cookies as browsers see them. */
export interface Site {
  /** The origin browsers see: PUBLIC_ORIGIN, or the scheme and host as a trusted proxy forwards them. */
  readonly originOf: (req: Request) => string
  readonly setCookie: (req: Request, res: Response, base: string, value: string, maxAgeSeconds: number) => void
  readonly readCookie: (req: Request, base: string) => string | undefined
}

/** Cookies are `Secure`, with the `__Host-` prefix, when the site is served over HTTPS. */
export function createSite(publicOrigin: string | null): Site {
  const originOf = (req: Request): string => publicOrigin ?? `${req.protocol}://${req.host}`
  const secure = (req: Request): boolean => (publicOrigin === null ? req.secure : publicOrigin.startsWith('https:'))
  const cookieName = (req: Request, base: string) => (secure(req) ? `__Host-${base}` : base)
  return {
    originOf,
    setCookie(req, res, base, value, maxAgeSeconds) {
      res.append(
        'set-cookie',
        stringifySetCookie({
          name: cookieName(req, base),
          value,
          path: '/',
          httpOnly: true,
          sameSite: 'lax',
          secure: secure(req),
          maxAge: maxAgeSeconds,
        }),
      )
    },
    readCookie(req, base) {
      const header = req.headers.cookie
      return header === undefined ? undefined : parseCookie(header)[cookieName(req, base)]
    },
  }
}
