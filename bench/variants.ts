/** The servers the benchmark compares, and which bare framework each is measured against. */
export const VARIANTS = {
  'node:http': { label: 'bare node:http', baseline: null },
  express: { label: 'bare Express', baseline: null },
  'express+saiku': { label: 'Express + saikuAuth', baseline: 'express' },
  'express+floor': { label: 'Express + the floor (token map, IETF RateLimit fields)', baseline: 'express' },
  'express+passport+erl': { label: 'Express + passport-http-bearer + express-rate-limit', baseline: 'express' },
  koa: { label: 'bare Koa', baseline: null },
  'koa+saiku': { label: 'Koa + saikuAuth', baseline: 'koa' },
  'koa+floor': { label: 'Koa + the floor (token map, IETF RateLimit fields)', baseline: 'koa' },
  'express+saiku+redis': { label: 'Express + saikuAuth (Redis backend)', baseline: 'express' },
} as const

export type Variant = keyof typeof VARIANTS

/** Each framework's saikuAuth variant and its floor: the report shows how far the one is above the other. */
export const FLOORS = [
  { framework: 'Express', saiku: 'express+saiku', floor: 'express+floor' },
  { framework: 'Koa', saiku: 'koa+saiku', floor: 'koa+floor' },
] as const satisfies readonly { framework: string; saiku: Variant; floor: Variant }[]

export const TENANT = {
  tenantId: '81e301f2-5d0c-4c4e-9a57-3f0e7f1d2c10',
  tenantSlug: 'acme',
  tier: 'bench',
  connectionName: 'production-warehouse',
} as const

/** Limits high enough never to refuse during a run. */
export const BENCH_TIERS = { bench: { perMinute: 1_000_000_000, perHour: 1_000_000_000 } }
