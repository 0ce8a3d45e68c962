import { describe, expect, expectTypeOf, it } from 'vitest'
import {
  asStoreError,
  isSaikuError,
  SaikuConfigError,
  SaikuCredentialExpiredError,
  SaikuError,
  SaikuHttpError,
  SaikuInputError,
  SaikuNotFoundError,
  SaikuPermissionError,
  SaikuStoreError,
  type AnySaikuError,
  type SaikuErrorCode,
  type WireCode,
} from './errors.js'

/** What a user's error handler does: one switch, each case typed as its class. */
function describeError(error: AnySaikuError): string {
  switch (error.code) {
    case 'ERR_SAIKU_CONFIG':
      expectTypeOf(error).toEqualTypeOf<SaikuConfigError>()
      return `config ${error.path}`
    case 'ERR_SAIKU_HTTP':
      expectTypeOf(error).toEqualTypeOf<SaikuHttpError>()
      expectTypeOf(error.wireCode).toEqualTypeOf<WireCode>()
      return `http ${error.wireCode}`
    case 'ERR_SAIKU_STORE':
      expectTypeOf(error).toEqualTypeOf<SaikuStoreError>()
      return `store ${error.source}`
    case 'ERR_SAIKU_INVALID_INPUT':
      expectTypeOf(error).toEqualTypeOf<SaikuInputError>()
      return `input ${error.field}`
    case 'ERR_SAIKU_NOT_FOUND':
      expectTypeOf(error).toEqualTypeOf<SaikuNotFoundError>()
      return `not found ${error.resource}`
    case 'ERR_SAIKU_PERMISSION_DENIED':
      expectTypeOf(error).toEqualTypeOf<SaikuPermissionError>()
      return `permission ${error.permissions.join(' ')}`
    case 'ERR_SAIKU_CREDENTIAL_EXPIRED':
      expectTypeOf(error).toEqualTypeOf<SaikuCredentialExpiredError>()
      return 'expired'
    default:
      // Every code is handled: a new class without a case fails to compile here.
      expectTypeOf(error).toBeNever()
      return error
  }
}

describe('the SaikuError family', () => {
  it('narrows to the class on switch (error.code)', () => {
    expectTypeOf<SaikuErrorCode>().toEqualTypeOf<
      | 'ERR_SAIKU_CONFIG'
      | 'ERR_SAIKU_HTTP'
      | 'ERR_SAIKU_STORE'
      | 'ERR_SAIKU_INVALID_INPUT'
      | 'ERR_SAIKU_NOT_FOUND'
      | 'ERR_SAIKU_PERMISSION_DENIED'
      | 'ERR_SAIKU_CREDENTIAL_EXPIRED'
    >()
    expect(describeError(new SaikuConfigError('realm', 'a string', 1))).toBe('config realm')
    expect(describeError(new SaikuHttpError('not_found'))).toBe('http not_found')
    expect(describeError(new SaikuStoreError('limiter', 'down'))).toBe('store limiter')
    expect(describeError(new SaikuInputError('label', 'label must be a non-empty string.'))).toBe('input label')
    expect(describeError(new SaikuNotFoundError('tenant', 'Tenant does not exist.'))).toBe('not found tenant')
    expect(describeError(new SaikuPermissionError('no', ['keys:write']))).toBe('permission keys:write')
    expect(describeError(new SaikuCredentialExpiredError())).toBe('expired')
  })

  it('keeps the wire code of an HTTP error apart from its class code', () => {
    const error = new SaikuHttpError('not_found')
    expect(error).toMatchObject({
      name: 'SaikuHttpError',
      code: 'ERR_SAIKU_HTTP',
      wireCode: 'not_found',
      status: 404,
      message: 'Resource does not exist.',
    })
    expectTypeOf(error.code).toEqualTypeOf<'ERR_SAIKU_HTTP'>()
  })

  it('tells its errors from anything else with isSaikuError, typed as the union', () => {
    const thrown: unknown = new SaikuInputError('ttlSeconds', 'ttlSeconds must be an integer.')
    expect(isSaikuError(thrown)).toBe(true)
    if (isSaikuError(thrown)) expectTypeOf(thrown).toEqualTypeOf<AnySaikuError>()
    expect(isSaikuError(new Error('x'))).toBe(false)
    expect(thrown).toBeInstanceOf(SaikuError)
  })

  it('wraps a backend failure as a store error carrying its cause, and keeps one that is already', () => {
    const cause = new Error('ECONNRESET')
    const wrapped = asStoreError(cause, 'key_store', 'key store failed')
    expect(wrapped).toMatchObject({ code: 'ERR_SAIKU_STORE', source: 'key_store', message: 'key store failed', cause })
    expect(asStoreError(wrapped, 'limiter', 'other')).toBe(wrapped)
  })
})
