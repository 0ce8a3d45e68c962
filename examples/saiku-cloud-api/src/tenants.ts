import { randomUUID } from 'node:crypto'
import {
  SaikuHttpError,
  type KeyManager,
  type SubscriptionStatus,
  type TenantAdminStore,
  type TenantRecord,
  type WindowLimits,
} from '@saiku/core'
import { labelProblem } from '@saiku/core/store'
import { TRIAL_DAYS } from './api.js'

export type SubscriptionChoice = 'none' | 'trial' | 'active'

export interface NewTenant {
  readonly slug: string
  readonly tier: string
  readonly connectionName?: string
  readonly subscription?: SubscriptionChoice
  /** The tenant's own limits, day and month quotas among them; null or absent: its tier's. */
  readonly limits?: WindowLimits | null
}

const SLUG = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/
export const SLUG_RULE = 'lower-case letters, digits and inner hyphens, 1 to 63 characters'

export function isSlug(value: string): boolean {
  return SLUG.test(value)
}

/** A connection name is checked as a key's label is: no control, format or bidi character, something visible. */
export function connectionNameProblem(name: string): string | null {
  return labelProblem(name)?.replace(/^label/, 'connection name') ?? null
}

/** Creates a tenant with a fresh ID; the store validates tier and limits. */
export async function createTenant(
  store: TenantAdminStore,
  input: NewTenant,
  nowMs = Date.now(),
): Promise<TenantRecord> {
  if (!isSlug(input.slug)) throw new SaikuHttpError('invalid_request', `slug: ${SLUG_RULE}.`)
  const connectionProblem = input.connectionName === undefined ? null : connectionNameProblem(input.connectionName)
  if (connectionProblem !== null) throw new SaikuHttpError('invalid_request', `${connectionProblem}.`)
  if ((await store.findTenantBySlug(input.slug)) !== null)
    throw new SaikuHttpError('conflict', `A tenant with slug "${input.slug}" exists already.`)
  const choice = input.subscription ?? 'trial'
  const status: SubscriptionStatus = choice === 'trial' ? 'trialing' : choice
  const tenant: TenantRecord = {
    tenantId: randomUUID(),
    tenantSlug: input.slug,
    tier: input.tier,
    connectionName: input.connectionName ?? 'production-warehouse',
    subscription: {
      status,
      trialEndsAt: choice === 'trial' ? new Date(nowMs + TRIAL_DAYS * 86_400_000) : null,
      // A trial or a plan started today anchors the billing periods on today.
      billingAnchor: choice === 'none' ? null : new Date(nowMs),
    },
    limits: input.limits ?? null,
  }
  try {
    await store.putTenant(tenant)
  } catch (error) {
    // Another process created the same slug between the check and the write: the database's unique index decides.
    const given = (error as { code?: unknown } | null)?.code
    const code = typeof given === 'string' ? given : ''
    if (code === '23505' || code.startsWith('SQLITE_CONSTRAINT'))
      throw new SaikuHttpError('conflict', `A tenant with slug "${input.slug}" exists already.`)
    throw error
  }
  return tenant
}

export const DEMO_PERMISSIONS = ['keys:read', 'keys:write', 'billing:write']

/** On an empty store: the demo tenant "acme" on a trial of the starter plan, and one key. */
export async function seedDemo(
  store: TenantAdminStore,
  keys: KeyManager,
): Promise<{ tenant: TenantRecord; key: string } | null> {
  if ((await store.listTenants()).length > 0) return null
  let tenant: TenantRecord
  try {
    tenant = await createTenant(store, {
      slug: 'acme',
      tier: 'starter',
      connectionName: 'production-warehouse',
      subscription: 'trial',
    })
  } catch (error) {
    // Several servers started on one new database at once: one of them seeds it.
    if (error instanceof SaikuHttpError && error.wireCode === 'conflict') return null
    throw error
  }
  const { key } = await keys.create(tenant.tenantId, { label: 'production-agent', permissions: DEMO_PERMISSIONS })
  return { tenant, key }
}
