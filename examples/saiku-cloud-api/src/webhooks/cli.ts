import { parseArgs } from 'node:util'
import { SaikuHttpError } from '@saiku/core'
import { readConfig } from '../config.js'
import { quoted } from '../printable.js'
import { openStore } from '../store.js'
import { createEndpointStore, isEndpointId, WebhookInputError } from './endpoints.js'
import { endpointView } from './routes.js'
import { readWebhookSettings } from './settings.js'
import { openWebhookSql } from './sql.js'

// `saiku webhooks …`: a tenant's webhook endpoints, for an operator, on the store the servers use.

export const WEBHOOKS_USAGE = `  webhooks add --tenant SLUG --url https://… [--events key.revoked,key.expiring|*] [--description TEXT]
                                   the signing secret (whsec_…) is shown this once
  webhooks list --tenant SLUG      endpoints, their state and events; never a secret
  webhooks remove ENDPOINT_ID --tenant SLUG`

/** A mistake in a webhooks command line: usage, exit code 2. */
export class WebhooksUsageError extends Error {}

export const isWebhooksCommand = (argv: readonly string[]): boolean =>
  argv.find((arg) => !arg.startsWith('-')) === 'webhooks'

interface CommandOutput {
  json: boolean
  print(human: string, data: unknown): void
}

export async function runWebhooksCommand(argv: string[], out: CommandOutput): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      json: { type: 'boolean', default: false },
      tenant: { type: 'string' },
      url: { type: 'string' },
      events: { type: 'string' },
      description: { type: 'string' },
    },
  })
  out.json = values.json
  const [, action, ...rest] = positionals
  if (action === undefined || !['add', 'list', 'remove'].includes(action))
    throw new WebhooksUsageError(`unknown command "webhooks${action === undefined ? '' : ` ${action}`}"`)
  if (rest.length > (action === 'remove' ? 1 : 0)) throw new WebhooksUsageError(`unexpected argument "${rest.at(-1)}"`)
  const slug = values.tenant
  if (slug === undefined || slug === '') throw new WebhooksUsageError('--tenant is required')
  if (action !== 'add')
    for (const name of ['url', 'events', 'description'] as const)
      if (values[name] !== undefined) throw new WebhooksUsageError(`--${name}: not an option of webhooks ${action}`)
  if (action === 'add' && (values.url === undefined || values.url === ''))
    throw new WebhooksUsageError('--url is required')
  const endpointId = rest[0]
  if (action === 'remove' && endpointId === undefined)
    throw new WebhooksUsageError('webhooks remove needs an ENDPOINT_ID')
  if (action === 'remove' && !isEndpointId(endpointId))
    throw new WebhooksUsageError(`${JSON.stringify(endpointId)} is not an endpoint ID (ep_ and 16 characters)`)
  const settings = readWebhookSettings()

  const opened = await openStore(readConfig().databaseUrl, { watchChanges: false })
  try {
    const tenant = await opened.store.findTenantBySlug(slug)
    if (tenant === null) throw new SaikuHttpError('not_found', `No tenant with slug "${slug}".`)
    const endpoints = createEndpointStore(await openWebhookSql(opened.store), settings.policy)
    switch (action) {
      case 'add': {
        const events = values.events === undefined ? undefined : values.events.split(',').map((type) => type.trim())
        const added = await endpoints
          .add(tenant.tenantId, { url: values.url, events, description: values.description })
          .catch((error: unknown) => {
            if (error instanceof WebhookInputError) throw new WebhooksUsageError(`--${error.field}: ${error.message}`)
            throw error
          })
        const view = endpointView(added.endpoint)
        out.print(
          `Added webhook ${view.endpointId} for ${tenant.tenantSlug}: ${quoted(view.url)} (${view.events.join(', ')}).\n` +
            `Signing secret, shown this once; copy it now:\n${added.secret}`,
          { ...view, secret: added.secret, tenantSlug: tenant.tenantSlug },
        )
        return
      }
      case 'list': {
        const listed = (await endpoints.list(tenant.tenantId)).map(endpointView)
        out.print(
          listed
            .map(
              (e) =>
                `${e.endpointId}\t${e.state}\t${quoted(e.url)}\t${e.events.join(',')}` +
                (e.stateReason === null ? '' : `\t${quoted(e.stateReason)}`),
            )
            .join('\n') || `No webhooks for ${tenant.tenantSlug}.`,
          listed,
        )
        return
      }
      case 'remove': {
        if (!(await endpoints.remove(tenant.tenantId, endpointId!)))
          throw new SaikuHttpError('not_found', `No webhook ${endpointId} for ${tenant.tenantSlug}.`)
        out.print(`Removed webhook ${endpointId} and its delivery log.`, { endpointId, removed: true })
        return
      }
    }
  } finally {
    await opened.close()
  }
}
