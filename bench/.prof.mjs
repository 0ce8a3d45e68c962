import { Redis } from 'ioredis'
import { createRedisLimiter } from '@saiku/redis'
const client = new Redis(process.env.REDIS_URL, { enableOfflineQueue: false })
await new Promise((r) => client.once('ready', r))
const quotas = { perMinute: 1e9, perHour: 1e9, perDay: 1e9, perMonth: 1e9, monthStartDay: 31 }
const limiter = createRedisLimiter({ client, keyPrefix: `prof-${process.pid}` })
let next = 0
const n = 300000
const worker = async () => { while (next < n) await limiter.consume(`tenant-${next++ % 100}`, quotas) }
await Promise.all(Array.from({ length: 64 }, worker))
for (const k of await client.keys(`prof-${process.pid}*`)) await client.del(k)
client.disconnect()
