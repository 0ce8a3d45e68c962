import { SaikuConfigError } from './errors.js'

// The checks that options, tiers and backends share: each names the option path and
// throws a SaikuConfigError saying what was expected; none falls back silently.

const MAX_TIMER_MS = 2_147_483_647

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Throws on the first key of `value` that is not in `known`. */
export function checkKnown(path: string, value: object, known: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      throw new SaikuConfigError(`${path}${path === '' ? '' : '.'}${key}`, `a known option (${known.join(', ')})`, key)
    }
  }
}

/** A group of options (`cache: { … }`): an object with known keys only, `{}` when left out. */
export function optionGroup(path: string, value: unknown, known: readonly string[]): Record<string, unknown> {
  if (value === undefined) return {}
  if (!isPlainObject(value)) throw new SaikuConfigError(path, 'an object', value)
  checkKnown(path, value, known)
  return value
}

/** Milliseconds that a timer can hold. */
export function durationMs(path: string, value: unknown, fallback: number, min = 0): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > MAX_TIMER_MS) {
    throw new SaikuConfigError(path, `an integer number of milliseconds from ${min} to ${MAX_TIMER_MS}`, value)
  }
  return value
}

export function isPositiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0
}

export function positiveInteger(path: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (!isPositiveInteger(value)) throw new SaikuConfigError(path, 'a positive integer', value)
  return value
}

export function nonNegativeInteger(path: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    throw new SaikuConfigError(path, 'a non-negative integer', value)
  return value
}

export function integerInRange(path: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new SaikuConfigError(path, `an integer from ${min} to ${max}`, value)
  }
  return value
}

export function oneOf<T extends string>(path: string, value: unknown, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback
  if (!allowed.includes(value as T))
    throw new SaikuConfigError(path, `one of ${allowed.map((a) => `"${a}"`).join(', ')}`, value)
  return value as T
}

export function booleanOption(path: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw new SaikuConfigError(path, 'a boolean', value)
  return value
}

export function optionalFunction<F>(path: string, value: unknown): F | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'function') throw new SaikuConfigError(path, 'a function', value)
  return value as F
}

/** An object with the methods named, or undefined when left out. */
export function optionalObjectWith<T>(
  path: string,
  value: unknown,
  methods: readonly string[],
  expected: string,
): T | undefined {
  if (value === undefined) return undefined
  if (
    typeof value !== 'object' ||
    value === null ||
    methods.some((name) => typeof (value as Record<string, unknown>)[name] !== 'function')
  ) {
    throw new SaikuConfigError(path, expected, value)
  }
  return value as T
}

/** A list of non-empty strings, each one of `allowed` when given. */
export function stringSet(
  path: string,
  value: unknown,
  allowed?: readonly string[],
  allowedName = 'a known value',
): ReadonlySet<string> {
  if (value === undefined) return new Set()
  if (!Array.isArray(value)) throw new SaikuConfigError(path, 'an array of strings', value)
  for (const [index, entry] of value.entries()) {
    if (typeof entry !== 'string' || entry === '')
      throw new SaikuConfigError(`${path}[${index}]`, 'a non-empty string', entry)
    if (allowed !== undefined && !allowed.includes(entry))
      throw new SaikuConfigError(`${path}[${index}]`, `${allowedName} (${allowed.join(', ')})`, entry)
  }
  return new Set(value as string[])
}
