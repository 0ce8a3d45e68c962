// @saiku/core/adapter: what a framework adapter needs to map a request in and write a decision out.

export type {
  AdmittedDecision,
  AuthDecision,
  AuthRequest,
  PassedDecision,
  SaikuPrincipal,
  UnverifiedDecision,
  WouldBeRefusal,
} from '../decision.js'
export type { Authenticator } from '../authenticator.js'
export { BODY_HEADERS, endStartedResponse, errorResponse, writeErrorResponse } from '../http.js'
export type { ErrorResponse, HeaderMap, StartedResponse, WritableResponse } from '../http.js'
export { checkPermissions, permissionGuard } from '../permissions.js'
export type { PermissionGuard, PermissionGuardArguments, PermissionGuardOptions } from '../permissions.js'
export { errorResponseFor, errorResponseForStatus, resolveSaikuErrorsOptions } from '../error-response.js'
export { callHook, clientAddressValue, notifyHook, syncHookValue, warnHookFailed } from '../user-hooks.js'
export type { HookAnswer } from '../user-hooks.js'
export type {
  ErrorResponseOptions,
  ResolvedSaikuErrorsOptions,
  SaikuErrorsOptions,
  ThrownErrorResponse,
} from '../error-response.js'
export { addressFromHeader, resolveClientAddressHeader } from '../forwarded-address.js'
export type { ClientAddressHeader } from '../forwarded-address.js'
