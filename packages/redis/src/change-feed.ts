import { randomUUID } from 'node:crypto'
import {
  announceKeyStoreChange,
  announceKeyStoreFeed,
  notifyHook,
  onKeyStoreChange,
  warnHookFailed,
  type KeyChange,
} from '@saiku/core/store'
import { isKeyId, SaikuConfigError, type KeyStore } from '@saiku/core'

/** What the feed needs of the publishing client: an ioredis 5 or 6 `Redis` or `Cluster` fits. */
export interface RedisPublisher {
  publish(channel: string, message: string): Promise<unknown>
}

/** What the feed needs of the subscribing client: an ioredis 5 or 6 `Redis` or `Cluster` fits. */
export interface RedisSubscriber {
  on(event: 'message', listener: (channel: string, message: string) => void): unknown
  /** `close`: the connection is lost; `ready`: connected again (ioredis emits both). */
  on(event: 'close' | 'ready', listener: () => void): unknown
  off(event: 'message', listener: (channel: string, message: string) => void): unknown
  off(event: 'close' | 'ready', listener: () => void): unknown
  subscribe(channel: string): Promise<unknown>
  unsubscribe(channel: string): Promise<unknown>
  /** Optional (ioredis has it): with `true`, drops the connection and opens another; called when it stalls. */
  disconnect?(reconnect?: boolean): void
}

export interface RedisChangeFeedOptions {
  /** Publishes this process's changes. */
  readonly publisher: RedisPublisher
  /** A connection of its own: it switches to subscriber mode. */
  readonly subscriber: RedisSubscriber
  /** Default `"saiku:changes"`. */
  readonly channel?: string
  /**
   * Called when a change could not be published (Redis down: other processes then rely on their
   * cache TTL), and when the subscription is lost or stalls. It may be async; what it throws or rejects with
   * becomes a process warning (`SAIKU_HOOK_FAILED`), once per distinct message.
   */
  readonly onError?: (error: Error) => unknown
  /**
   * How often the subscription is proven alive: a message published through `publisher` must come
   * back through `subscriber`, so a connection that stays silent (stalled, no error) is found within
   * twice this long. While the subscription is lost or stalled, every cache of the store is cleared
   * and what is read is trusted for at most this long (5000 when the check is off); once it hears
   * again, every cache is cleared once more. 0 turns the check off. Default 5000.
   */
  readonly checkMs?: number
}

export interface RedisChangeFeed {
  /** Whether the subscription hears changes now: false from a loss or stall until it hears again. */
  readonly live: boolean
  close(): Promise<void>
}

type RelayedChange =
  | (Extract<KeyChange, { kind: 'key' | 'tenant' }> & { origin: string })
  /** A heartbeat: a feed's own comes back to it through the subscription; others ignore it. */
  | { origin: string; kind: 'ping' }

function parseChange(message: string): RelayedChange | null {
  let value: unknown
  try {
    value = JSON.parse(message)
  } catch {
    return null
  }
  if (typeof value !== 'object' || value === null) return null
  const { origin, kind, keyId, tenantId } = value as Record<string, unknown>
  if (typeof origin !== 'string') return null
  if (kind === 'ping') return { origin, kind }
  if (kind === 'key' && isKeyId(keyId)) return { origin, kind, keyId }
  if (kind === 'tenant' && typeof tenantId === 'string' && tenantId.length > 0 && tenantId.length <= 200)
    return { origin, kind, tenantId }
  return null
}

/**
 * Relays key and tenant changes between processes over Redis pub/sub, so a key
 * revoked in one process is dropped from every other process's cache within
 * milliseconds instead of the cache TTL. Works with any KeyStore: changes made
 * through a key manager (or announced) here are published; changes published
 * elsewhere are announced here. While the subscription is lost or stalled (found
 * by a heartbeat within 2 × `checkMs`), messages are lost: every cache of the store
 * is cleared and trusted for at most `checkMs` until the feed hears again, then
 * cleared once more.
 */
export async function createRedisChangeFeed(
  store: KeyStore,
  options: RedisChangeFeedOptions,
): Promise<RedisChangeFeed> {
  const { onError } = options
  if (onError !== undefined && typeof onError !== 'function')
    throw new SaikuConfigError('onError', 'a function', onError)
  const channel = options.channel ?? 'saiku:changes'
  const checkMs = options.checkMs ?? 5_000
  if (!Number.isSafeInteger(checkMs) || checkMs < 0)
    throw new SaikuConfigError('checkMs', 'a non-negative integer', checkMs)
  const trustMs = checkMs > 0 ? checkMs : 5_000
  const { publisher, subscriber } = options
  const origin = randomUUID()
  // Set while announcing a change that came from Redis, so it is not published back.
  let relaying = false
  let closed = false
  // The subscription may have missed changes: the store's caches were told, and are told again when it hears.
  let down = false
  // The heartbeat published and not yet heard back; `sentAtMs` once Redis took it.
  let ping: { sentAtMs: number | undefined } | undefined
  const feed = {}

  const report = (error: unknown): void => {
    if (onError === undefined) return
    const failure = error instanceof Error ? error : new Error(String(error))
    notifyHook(
      () => onError(failure),
      (hookFailure) => warnHookFailed('change feed onError', hookFailure),
    )
  }
  const lost = (what: string): void => {
    ping = undefined
    if (down || closed) return
    down = true
    announceKeyStoreFeed(store, feed, { live: false, maxAgeMs: trustMs })
    report(new Error(`${what}; caches cleared, records trusted for at most ${trustMs} ms until it hears again`))
  }
  const heard = (): void => {
    if (!down || closed) return
    down = false
    announceKeyStoreFeed(store, feed, { live: true })
  }

  const stopListening = onKeyStoreChange(store, (change) => {
    // "all" is a local matter (this process missed something); other processes did not.
    if (relaying || change.kind === 'all') return
    // A publish that throws at once is a failure to publish like one that rejects.
    notifyHook(() => publisher.publish(channel, JSON.stringify({ origin, ...change })), report)
  })
  const onMessage = (from: string, message: string): void => {
    if (from !== channel) return
    const change = parseChange(message)
    if (change === null) return
    if (change.origin === origin) {
      // Our own heartbeat (or change) came back: the subscription hears.
      if (change.kind === 'ping') ping = undefined
      heard()
      return
    }
    if (change.kind === 'ping') return
    relaying = true
    try {
      announceKeyStoreChange(
        store,
        change.kind === 'key' ? { kind: 'key', keyId: change.keyId } : { kind: 'tenant', tenantId: change.tenantId },
      )
    } finally {
      relaying = false
    }
  }
  const onClose = (): void => lost('Redis change feed lost its subscriber connection')
  // Connected again: subscribed once this resolves (ioredis also resubscribes by itself).
  const onReady = (): void => {
    if (closed) return
    subscriber.subscribe(channel).then(heard, report)
  }
  subscriber.on('message', onMessage)
  subscriber.on('close', onClose)
  subscriber.on('ready', onReady)
  await subscriber.subscribe(channel)

  /** Proves the subscription alive (the last heartbeat came back) and publishes the next. */
  const beat = (): void => {
    const last = ping
    if (last !== undefined) {
      // Still being published, or published too recently to have come back for sure.
      if (last.sentAtMs === undefined || Date.now() - last.sentAtMs < checkMs / 2) return
      const wasDown = down
      lost(`Redis change feed heard no message for ${checkMs} ms`)
      // A stalled connection never errors: open another (ioredis resubscribes on it).
      if (!wasDown) subscriber.disconnect?.(true)
    }
    const next: { sentAtMs: number | undefined } = { sentAtMs: undefined }
    ping = next
    publisher.publish(channel, JSON.stringify({ origin, kind: 'ping' })).then(
      () => {
        next.sentAtMs = Date.now()
      },
      () => {
        // Redis cannot take it: that proves nothing about the subscription; the next beat tries again.
        if (ping === next) ping = undefined
      },
    )
  }
  const heartbeat = checkMs > 0 ? setInterval(beat, checkMs) : undefined
  heartbeat?.unref()

  return {
    get live() {
      return !down && !closed
    },
    async close() {
      closed = true
      if (heartbeat !== undefined) clearInterval(heartbeat)
      stopListening()
      subscriber.off('message', onMessage)
      subscriber.off('close', onClose)
      subscriber.off('ready', onReady)
      // A stalled connection would never answer: not waited on past the trust bound.
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        subscriber.unsubscribe(channel).catch(() => {}),
        new Promise((resolve) => {
          timer = setTimeout(resolve, trustMs)
          timer.unref()
        }),
      ])
      clearTimeout(timer)
    },
  }
}
