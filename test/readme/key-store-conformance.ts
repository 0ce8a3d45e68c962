import type pg from 'pg'
import { describeKeyStoreConformance } from '@saiku/core/testing'
import { insertTenant, MyKeyStore } from './my-key-store.js'

/** Your store against the suite that MemoryKeyStore passes, on a test database (in vitest). */
export function describeMyKeyStore(pool: pg.Pool): void {
  describeKeyStoreConformance('my store', async () => ({
    store: new MyKeyStore(pool),
    addTenant: (tenant) => insertTenant(pool, tenant),
  }))
}
