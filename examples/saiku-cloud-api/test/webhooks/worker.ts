// A delivery process for the tests: opens the store the way the server does, and delivers to a receiver on
// loopback (WORKER_RECEIVER_PORT) through the test transport. It runs rounds until WORKER_IDLE_ROUNDS of them in
// a row found nothing, then prints how many attempts it made and exits; the tests may kill it before.
import { openStore } from '../../src/store.js'
import { openWebhookSql } from '../../src/webhooks/sql.js'
import { createWebhookDelivery } from '../../src/webhooks/delivery.js'
import { loopbackTransport } from './support.js'

const opened = await openStore(process.env.WORKER_DATABASE_URL!, { watchChanges: false })
const sql = await openWebhookSql(opened.store)
const delivery = createWebhookDelivery({
  sql,
  policy: { allowLoopback: true, allowPrivate: false },
  transport: loopbackTransport({ localhost: ['127.0.0.1'] }),
  batchSize: Number(process.env.WORKER_BATCH_SIZE ?? 16),
})
let attempted = 0
for (let idle = 0; idle < Number(process.env.WORKER_IDLE_ROUNDS ?? 3);) {
  const round = await delivery.runOnce()
  attempted += round.attempted
  idle = round.attempted === 0 && round.fannedOut === 0 ? idle + 1 : 0
  await new Promise((resolve) => setTimeout(resolve, 20))
}
process.stdout.write(`${JSON.stringify({ attempted })}\n`)
await opened.close()
