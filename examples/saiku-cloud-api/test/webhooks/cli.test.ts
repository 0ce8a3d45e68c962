import { afterEach, describe, expect, it } from 'vitest'
import { cli, cliJson, processTimeout, tempDatabase } from '../helpers.js'

const cleanups: (() => unknown)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

describe('saiku webhooks', () => {
  it(
    'adds (showing the secret once), lists and removes endpoints, and refuses bad input with a usage error',
    async () => {
      const temp = tempDatabase()
      cleanups.push(() => temp.remove())
      const env = { DATABASE_URL: temp.databaseUrl }
      await cliJson(['tenants', 'create', '--slug', 'acme', '--tier', 'team'], env)
      const added = await cliJson<{ endpointId: string; secret: string; events: string[] }>(
        [
          'webhooks',
          'add',
          '--tenant',
          'acme',
          '--url',
          'https://hooks.example/in',
          '--events',
          'key.revoked,key.leaked',
        ],
        env,
      )
      expect(added.secret).toMatch(/^whsec_/)
      expect(added.events).toEqual(['key.revoked', 'key.leaked'])
      const listed = await cli(['webhooks', 'list', '--tenant', 'acme'], env)
      expect(listed.code).toBe(0)
      expect(listed.stdout).toContain(`${added.endpointId}\tactive\t"https://hooks.example/in"\tkey.revoked,key.leaked`)
      expect(listed.stdout).not.toContain(added.secret)

      const metadata = await cli(['webhooks', 'add', '--tenant', 'acme', '--url', 'https://169.254.169.254/'], env)
      expect([metadata.code, metadata.stderr]).toEqual([
        2,
        'saiku: --url: url must not point at a link-local address.\n\nRun "saiku help" for usage.\n',
      ])
      const plain = await cli(['webhooks', 'add', '--tenant', 'acme', '--url', 'http://localhost:9/in'], env)
      expect(plain.code).toBe(2)
      expect(plain.stderr).toContain('url must use https')
      const allowed = await cli(['webhooks', 'add', '--tenant', 'acme', '--url', 'http://localhost:9/in'], {
        ...env,
        WEBHOOKS_ALLOW_LOOPBACK: '1',
      })
      expect(allowed.code).toBe(0)
      expect((await cli(['webhooks', 'list', '--tenant', 'nobody'], env)).code).toBe(1)
      expect((await cli(['webhooks', 'remove', 'nonsense', '--tenant', 'acme'], env)).code).toBe(2)

      expect((await cli(['webhooks', 'remove', added.endpointId, '--tenant', 'acme'], env)).code).toBe(0)
      const again = await cli(['webhooks', 'remove', added.endpointId, '--tenant', 'acme'], env)
      expect([again.code, again.stderr]).toEqual([1, `saiku: No webhook ${added.endpointId} for acme.\n`])
      expect((await cli(['webhooks', 'list', '--tenant', 'acme'], env)).stdout).not.toContain(added.endpointId)
    },
    processTimeout(10),
  )
})
