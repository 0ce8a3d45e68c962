import { Redis } from 'ioredis'
import { createRedisLimiter } from '@saiku/redis'
const client = new Redis(process.env.REDIS_URL, { enableOfflineQueue: false })
await new Promise((r) => client.once('ready', r))
const limits = { perMinute: 1e9, perHour: 1e9 }
const quotas = { perMinute: 1e9, perHour: 1e9, perDay: 1e9, perMonth: 1e9, monthStartDay: 31 }
const limiters = {
  batch: createRedisLimiter({ client, keyPrefix: `cmp-${process.pid}-a` }),
  batchQ: createRedisLimiter({ client, keyPrefix: `cmp-${process.pid}-q` }),
  perCall: createRedisLimiter({ client, keyPrefix: `cmp-${process.pid}-b`, coalesce: false }),
}
async function run(name, inFlight, n = 20000) {
  const limiter = limiters[name]
  const l = name === 'batchQ' ? quotas : limits
  let next = 0
  const t = process.cpuUsage()
  const worker = async () => { while (next < n) await limiter.consume(`tenant-${next++ % 100}`, l) }
  await Promise.all(Array.from({ length: inFlight }, worker))
  const u = process.cpuUsage(t)
  return (u.user + u.system) / n
}
for (const inFlight of [1, 64]) {
  const res = { batch: [], batchQ: [], perCall: [] }
  for (let r = 0; r < 8; r++) for (const name of Object.keys(res)) res[name].push(await run(name, inFlight, inFlight === 1 ? 4000 : 20000))
  const med = (a) => a.slice(2).sort((x, y) => x - y)[Math.floor((a.length - 2) / 2)].toFixed(2)
  console.log(inFlight, Object.fromEntries(Object.entries(res).map(([k, v]) => [k, med(v)])))
}
for (const k of await client.keys(`cmp-${process.pid}*`)) await client.del(k)
client.disconnect()
