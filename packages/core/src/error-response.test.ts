import { describe, expect, it } from 'vitest'
import { errorResponseFor, errorResponseForStatus, resolveSaikuErrorsOptions } from './error-response.js'
import {
  SaikuConfigError,
  SaikuCredentialExpiredError,
  SaikuHttpError,
  SaikuInputError,
  SaikuNotFoundError,
  SaikuPermissionError,
  SaikuStoreError,
} from './errors.js'
import type { SaikuPrincipal } from './decision.js'
import { checkPermissions, permissionGuard } from './permissions.js'

const principal = (realm: string) =>
  ({ realm, credential: { permissions: ['keys:read'] } }) as unknown as SaikuPrincipal

describe('errorResponseFor', () => {
  it('answers each error of the family with its wire code, and reports only 5xx', () => {
    const cases = [
      [new SaikuHttpError('conflict', 'Taken.'), 409, '{"error":"conflict","message":"Taken."}', false],
      [
        new SaikuInputError('label', 'label must be a non-empty string.'),
        400,
        '{"error":"invalid_request","message":"label must be a non-empty string."}',
        false,
      ],
      [
        new SaikuNotFoundError('tenant', 'Tenant does not exist.'),
        404,
        '{"error":"not_found","message":"Tenant does not exist."}',
        false,
      ],
      [
        new SaikuPermissionError('A token cannot carry what the key does not hold: *.', ['*']),
        403,
        '{"error":"forbidden","message":"A token cannot carry what the key does not hold: *."}',
        false,
      ],
      [
        new SaikuCredentialExpiredError(),
        401,
        '{"error":"unauthorized","message":"API key missing or invalid."}',
        false,
      ],
      [
        new SaikuStoreError('key_store', 'down'),
        503,
        '{"error":"service_unavailable","message":"The service is temporarily unavailable. Retry shortly."}',
        true,
      ],
      [
        new SaikuConfigError('cost', 'a whole number', -1),
        500,
        '{"error":"internal_error","message":"An unexpected error occurred."}',
        true,
      ],
      [
        new SaikuHttpError('service_unavailable', 'Retry.'),
        503,
        '{"error":"service_unavailable","message":"Retry."}',
        true,
      ],
      [
        new Error('database password is hunter2'),
        500,
        '{"error":"internal_error","message":"An unexpected error occurred."}',
        true,
      ],
      [
        Object.assign(new Error('x'), { status: 413, expose: true }),
        413,
        '{"error":"payload_too_large","message":"The request body is too large."}',
        false,
      ],
    ] as const
    for (const [error, status, body, report] of cases) {
      expect(errorResponseFor(error), error.message).toMatchObject({ status, body, report })
    }
  })

  it('challenges the configured realm on a thrown 401, not "saiku" (realm bug)', () => {
    expect(errorResponseFor(new SaikuHttpError('unauthorized'), { realm: 'acme' }).headers['www-authenticate']).toBe(
      'Bearer realm="acme"',
    )
    expect(errorResponseFor(new SaikuCredentialExpiredError(), { realm: 'acme' }).headers['www-authenticate']).toBe(
      'Bearer realm="acme"',
    )
    expect(errorResponseFor(new SaikuHttpError('unauthorized')).headers['www-authenticate']).toBe(
      'Bearer realm="saiku"',
    )
  })

  it("lets the principal's realm win over the handler's option (realm bug)", () => {
    const response = errorResponseFor(new SaikuHttpError('unauthorized'), {
      realm: 'other',
      principal: principal('acme'),
    })
    expect(response.headers['www-authenticate']).toBe('Bearer realm="acme"')
  })

  it('keeps a challenge the handler set itself', () => {
    const error = new SaikuHttpError('unauthorized', undefined, {
      'www-authenticate': 'Bearer realm="mine", error="invalid_token"',
    })
    expect(errorResponseFor(error, { realm: 'acme' }).headers['www-authenticate']).toBe(
      'Bearer realm="mine", error="invalid_token"',
    )
  })
})

describe('checkPermissions and permissionGuard', () => {
  it('challenges the configured realm when there is no principal, not "saiku" (realm bug)', () => {
    expect(checkPermissions(undefined, ['keys:read'], 'acme')?.headers['www-authenticate']).toBe('Bearer realm="acme"')
    expect(checkPermissions(undefined, ['keys:read'])?.headers['www-authenticate']).toBe('Bearer realm="saiku"')
    expect(checkPermissions(principal('acme'), ['keys:write'], 'other')?.headers['www-authenticate']).toMatch(
      /^Bearer realm="acme", error="insufficient_scope"/,
    )
  })

  it('takes an options object after the permissions, and checks it once', () => {
    expect(permissionGuard(['keys:read', 'keys:write', { realm: 'acme' }])).toEqual({
      permissions: ['keys:read', 'keys:write'],
      realm: 'acme',
    })
    expect(permissionGuard(['keys:read'])).toEqual({ permissions: ['keys:read'], realm: 'saiku' })
    expect(() => permissionGuard(['keys:read', { realm: 'a"b' }])).toThrow(
      'requirePermission().realm: expected 1 to 64 printable ASCII characters',
    )
    expect(() => permissionGuard([{ realm: 'acme' }])).toThrow('requirePermission(): expected at least one permission')
  })
})

describe('resolveSaikuErrorsOptions', () => {
  it('resolves the defaults and names a bad option', () => {
    expect(resolveSaikuErrorsOptions()).toEqual({ notFound: true, realm: 'saiku', onError: undefined })
    expect(() => resolveSaikuErrorsOptions({ realm: '' })).toThrow(SaikuConfigError)
    expect(() => resolveSaikuErrorsOptions({ notFound: 'no' as never })).toThrow(
      'saikuErrors().notFound: expected a boolean, got "no"',
    )
    expect(() => resolveSaikuErrorsOptions({ onError: 1 as never })).toThrow(
      'saikuErrors().onError: expected a function, got 1',
    )
  })
})

describe('errorResponseFor on what handlers and frameworks throw', () => {
  it('gives a thrown 401 its challenge', () => {
    expect(errorResponseFor(new SaikuHttpError('unauthorized')).headers['www-authenticate']).toBe(
      'Bearer realm="saiku"',
    )
  })

  it("gives a framework's thrown 401 (http-errors, @fastify/error) the challenge of the realm, keeping its own", () => {
    expect(errorResponseFor(Object.assign(new Error('x'), { status: 401 }), { realm: 'api' }).headers).toEqual(
      expect.objectContaining({ 'www-authenticate': 'Bearer realm="api"' }),
    )
    // One the framework cannot send (a line break in it) is dropped, and the challenge takes its place.
    const broken = Object.assign(new Error('x'), { statusCode: 401, headers: { 'WWW-Authenticate': 'x\r\nSet: y' } })
    expect(errorResponseFor(broken).headers['www-authenticate']).toBe('Bearer realm="saiku"')
    const own = Object.assign(new Error('x'), { status: 401, headers: { 'WWW-Authenticate': 'Basic realm="admin"' } })
    expect(errorResponseFor(own).headers['www-authenticate']).toBe('Basic realm="admin"')
  })

  it('answers a thrown value that throws when it is read with the JSON 500, never a throw of its own', () => {
    const trap = () => {
      throw new Error('trap')
    }
    const hostile = new Proxy({}, { get: trap, has: trap, ownKeys: trap, getPrototypeOf: trap })
    expect(errorResponseFor(hostile)).toMatchObject({ status: 500, code: 'internal_error', report: true })
    const headersGetter = Object.defineProperty(Object.assign(new Error('x'), { status: 400 }), 'headers', {
      get: trap,
    })
    expect(errorResponseFor(headersGetter)).toMatchObject({ status: 500, code: 'internal_error', report: true })
  })

  it('keeps framework client errors and hides everything else', () => {
    expect(errorResponseFor(Object.assign(new Error('x'), { status: 413, expose: true }))).toMatchObject({
      status: 413,
      code: 'payload_too_large',
    })
    expect(
      errorResponseFor(Object.assign(new SyntaxError('x'), { status: 400, type: 'entity.parse.failed' })).body,
    ).toBe('{"error":"invalid_request","message":"The request body is not valid JSON."}')
    expect(
      errorResponseFor(Object.assign(new Error('x'), { statusCode: 400, code: 'FST_ERR_CTP_INVALID_JSON_BODY' })).body,
    ).toBe('{"error":"invalid_request","message":"The request body is not valid JSON."}')
    expect(errorResponseFor(Object.assign(new Error('secret'), { status: 503 }))).toMatchObject({
      status: 500,
      code: 'internal_error',
    })
    expect(errorResponseFor('a string')).toMatchObject({ status: 500 })
  })
})

describe('errorResponseFor, a framework error’s headers', () => {
  it('keeps what err.headers carries, as Koa and Express write it, less the body’s own and unwritable ones', () => {
    const error = Object.assign(new Error('Method Not Allowed'), {
      status: 405,
      expose: true,
      headers: { Allow: 'GET, HEAD', 'Content-Type': 'text/plain', 'x-n': 3, 'x-bad': 'a\nb', 'bad name': 'x' },
    })
    const response = errorResponseFor(error)
    expect(response.status).toBe(405)
    expect(response.headers).toMatchObject({
      allow: 'GET, HEAD',
      'x-n': '3',
      'content-type': 'application/json; charset=utf-8',
    })
    expect(response.headers).not.toHaveProperty('x-bad')
    expect(response.headers).not.toHaveProperty('bad name')
  })

  it('gives a 405 without Allow one from the methods the path answers', () => {
    const error = Object.assign(new Error('Method Not Allowed'), { status: 405, expose: true })
    expect(errorResponseFor(error, { allowedMethods: ['HEAD', 'GET', 'get'] }).headers.allow).toBe('HEAD, GET')
    expect(errorResponseFor(error).headers).not.toHaveProperty('allow')
  })
})

describe('errorResponseForStatus', () => {
  it('answers a 4xx set without a body in JSON, and leaves a 401 and unknown statuses', () => {
    expect(errorResponseForStatus(405)).toMatchObject({ status: 405, code: 'method_not_allowed' })
    expect(errorResponseForStatus(401)).toBeNull()
    expect(errorResponseForStatus(418)).toBeNull()
    expect(errorResponseForStatus(500)).toBeNull()
    expect(errorResponseForStatus(200)).toBeNull()
  })
})
