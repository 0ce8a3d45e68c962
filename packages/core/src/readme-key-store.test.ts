import { MemoryKeyStore } from '@saiku/core'
import { describeKeyStoreConformance } from '@saiku/core/testing'

// Your store in place of MemoryKeyStore: addTenant writes a tenant the way your app does,
// and an optional close() ends what the set-up opened (a pool, a connection).
describeKeyStoreConformance('my store', async () => {
  const store = new MemoryKeyStore()
  return { store, addTenant: async (tenant) => store.putTenant(tenant) }
})
