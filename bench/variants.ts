const HASHING_FLOOR = <F extends string>(framework: F) =>
  `${framework} + the hashing floor (the floor, SHA-256 of the token, a constant-time digest compare)` as const

/** The servers the benchmark compares, and which bare framework each is measured against. */
export const VARIANTS = {
  'node:http': { label: 'bare node:http', baseline: null },
  express: { label: 'bare Express', baseline: null },
  'express+saiku': { label: 'Express + saikuAuth', baseline: 'express' },
  'express+floor': { label: 'Express + the floor (token map, IETF RateLimit fields)', baseline: 'express' },
  'express+hashfloor': { label: HASHING_FLOOR('Express'), baseline: 'express' },
  'express+passport+erl': { label: 'Express + passport-http-bearer + express-rate-limit', baseline: 'express' },
  koa: { label: 'bare Koa', baseline: null },
  'koa+saiku': { label: 'Koa + saikuAuth', baseline: 'koa' },
  'koa+floor': { label: 'Koa + the floor (token map, IETF RateLimit fields)', baseline: 'koa' },
  'koa+hashfloor': { label: HASHING_FLOOR('Koa'), baseline: 'koa' },
  fastify: { label: 'bare Fastify', baseline: null },
  'fastify+saiku': { label: 'Fastify + saikuAuth', baseline: 'fastify' },
  'fastify+floor': { label: 'Fastify + the floor (token map, IETF RateLimit fields)', baseline: 'fastify' },
  'fastify+hashfloor': { label: HASHING_FLOOR('Fastify'), baseline: 'fastify' },
  hono: { label: 'bare Hono (on Node, @hono/node-server)', baseline: null },
  'hono+saiku': { label: 'Hono + saikuAuth', baseline: 'hono' },
  'hono+floor': { label: 'Hono + the floor (token map, IETF RateLimit fields)', baseline: 'hono' },
  'hono+hashfloor': { label: HASHING_FLOOR('Hono'), baseline: 'hono' },
  'express+saiku+redis': { label: 'Express + saikuAuth (Redis backend)', baseline: 'express' },
  // Measured by the Redis section (redis-backend.ts) against a redis-server of its own, not in the main rounds.
  'express+saiku+redis-pipelined': {
    label: 'Express + saikuAuth (Redis backend, auto-pipelining client)',
    baseline: 'express',
  },
  'express+saiku+redis-per-call': {
    label: 'Express + saikuAuth (Redis backend, one call per request)',
    baseline: 'express',
  },
  'koa+saiku+redis': { label: 'Koa + saikuAuth (Redis backend)', baseline: 'koa' },
  'koa+saiku+redis-pipelined': { label: 'Koa + saikuAuth (Redis backend, auto-pipelining client)', baseline: 'koa' },
  'koa+saiku+redis-per-call': { label: 'Koa + saikuAuth (Redis backend, one call per request)', baseline: 'koa' },
} as const

/** The variants only the Redis section loads. */
export const REDIS_SECTION_VARIANTS: readonly Variant[] = [
  'express+saiku+redis-pipelined',
  'express+saiku+redis-per-call',
  'koa+saiku+redis',
  'koa+saiku+redis-pipelined',
  'koa+saiku+redis-per-call',
]

export type Variant = keyof typeof VARIANTS

/**
 * Each framework's saikuAuth variant, its floor and its hashing floor: the report shows how far
 * saikuAuth is above each. `gated`: saikuAuth above the hashing floor is a target the run must
 * meet (the adapters written against it); else it is reported the same way, as a measure.
 */
export const FLOORS = [
  {
    framework: 'Express',
    saiku: 'express+saiku',
    floor: 'express+floor',
    hashingFloor: 'express+hashfloor',
    gated: false,
  },
  { framework: 'Koa', saiku: 'koa+saiku', floor: 'koa+floor', hashingFloor: 'koa+hashfloor', gated: false },
  {
    framework: 'Fastify',
    saiku: 'fastify+saiku',
    floor: 'fastify+floor',
    hashingFloor: 'fastify+hashfloor',
    gated: true,
  },
  { framework: 'Hono', saiku: 'hono+saiku', floor: 'hono+floor', hashingFloor: 'hono+hashfloor', gated: true },
] as const satisfies readonly {
  framework: string
  saiku: Variant
  floor: Variant
  hashingFloor: Variant
  gated: boolean
}[]

/** The most CPU per request a gated saikuAuth may cost above its hashing floor: the 95 % interval's upper end, µs. */
export const ABOVE_HASHING_FLOOR_TARGET_MICROS = 2

export const TENANT = {
  tenantId: '81e301f2-5d0c-4c4e-9a57-3f0e7f1d2c10',
  tenantSlug: 'acme',
  tier: 'bench',
  connectionName: 'production-warehouse',
} as const

/** Limits high enough never to refuse during a run. */
export const BENCH_TIERS = { bench: { perMinute: 1_000_000_000, perHour: 1_000_000_000 } }
