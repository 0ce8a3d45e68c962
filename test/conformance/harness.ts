import type { RequestListener } from 'node:http'
import type { Authenticator, KeyStore, SaikuOptions } from '@saiku/core'

export interface Project {
  readonly id: string
  readonly tenantId: string
  readonly name: string
}

/** What every harness's app serves, identically. */
export interface AppFixtures {
  readonly projects: ReadonlyMap<string, Project>
  /**
   * How often a handler really ran: `tenant` by GET /me/tenant, `preflight` by OPTIONS /me/tenant
   * (the stand-in for a CORS layer mounted after the middleware).
   */
  readonly hits: { tenant: number; preflight: number }
  /** Every error that reached the app's own error reporting, in order. */
  readonly errors: unknown[]
}

export interface AppSettings {
  /** Trust X-Forwarded-For (Express `trust proxy`, Koa `app.proxy`). Default false. */
  readonly trustProxy?: boolean
  /** Mount `saikuAuth` twice, as an app with nested routers might. */
  readonly mountTwice?: boolean
  /**
   * Mount `saikuAuth` and the routes in a router mounted at this path (Express
   * `app.use(path, router)`, a Koa router with this prefix), so every route is below it.
   */
  readonly mountAt?: string
  /** Mount a second, separate `saikuAuth(store, options)` after the first, as nested routers might. */
  readonly secondInstance?: boolean
  /** `saikuErrors({ onError })`'s hook instead of the harness's own reporting. */
  readonly errorsOnError?: (error: unknown) => unknown
}

export interface ConformanceApp {
  readonly handler: RequestListener
  readonly authenticator: Authenticator
}

/**
 * One framework adapter under test. Its app must mount `saikuAuth(store, options)`
 * on every route, give `options.realm` to `requirePermission` and the error handlers, and serve:
 *   GET    /me/tenant            200 principal.tenant (counts fixtures.hits.tenant)
 *   OPTIONS /me/tenant           204 without a body (counts fixtures.hits.preflight): a CORS layer after the middleware
 *   GET    /me/whoami            200 { tenantId, overLimit, unverified }: the principal's tenant or null, whether
 *                                 its rateLimit says refused (report-only limits), the saikuUnverified marker or null
 *   GET    /me/billing           200 { status } (tests exempt it from the subscription check)
 *   GET    /me/api-keys          needs keys:read, 200 { keys }
 *   DELETE /me/api-keys/:keyId   needs keys:write, 204, or the 404 of a thrown not_found
 *   GET    /me/projects/:id      200 the project if the caller's tenant owns it, else not_found
 *   GET    /me/reauthenticate    throws the 401 of SaikuHttpError('unauthorized')
 *   GET    /me/boom              sets Content-Length: 5 and ETag: "x", then throws a plain Error
 *   GET    /me/fail-after-write  starts a 200 with a chunk of body, then throws
 *   anything else                the JSON 404
 */
export interface AdapterHarness {
  readonly name: string
  /**
   * Cases that cannot apply to this adapter, by their full name (the concern's `describe`
   * and the case, joined by " > "), each with the reason. They are reported as skipped with
   * it; a name that matches no case fails the suite, and adapters.test.ts pins every list.
   */
  readonly notApplicable?: Readonly<Record<string, string>>
  createApp(store: KeyStore, options: SaikuOptions, fixtures: AppFixtures, settings?: AppSettings): ConformanceApp
}
