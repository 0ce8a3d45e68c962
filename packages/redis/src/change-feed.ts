import { randomUUID } from 'node:crypto'
import { announceKeyStoreChange, notifyHook, onKeyStoreChange, warnHookFailed, type KeyChange } from '@saiku/core/store'
import { isKeyId, SaikuConfigError, type KeyStore } from '@saiku/core'

/** What the feed needs of the publishing client: an ioredis 5 or 6 `Redis` or `Cluster` fits. */
export interface RedisPublisher {
  publish(channel: string, message: string): Promise<unknown>
}

/** What the feed needs of the subscribing client: an ioredis 5 or 6 `Redis` or `Cluster` fits. */
export interface RedisSubscriber {
  on(event: 'message', listener: (channel: string, message: string) => void): unknown
  off(event: 'message', listener: (channel: string, message: string) => void): unknown
  subscribe(channel: string): Promise<unknown>
  unsubscribe(channel: string): Promise<unknown>
}

export interface RedisChangeFeedOptions {
  /** Publishes this process's changes. */
  readonly publisher: RedisPublisher
  /** A connection of its own: it switches to subscriber mode. */
  readonly subscriber: RedisSubscriber
  /** Default `"saiku:changes"`. */
  readonly channel?: string
  /**
   * Called when a change could not be published (Redis down): other processes then rely on their cache TTL.
   * It may be async; what it throws or rejects with becomes a process warning (`SAIKU_HOOK_FAILED`), once per
   * distinct message.
   */
  readonly onError?: (error: Error) => unknown
}

export interface RedisChangeFeed {
  close(): Promise<void>
}

type RelayedChange = Extract<KeyChange, { kind: 'key' | 'tenant' }> & { origin: string }

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
 * elsewhere are announced here. A message lost while Redis is down leaves the
 * cache TTL as the bound.
 */
export async function createRedisChangeFeed(
  store: KeyStore,
  options: RedisChangeFeedOptions,
): Promise<RedisChangeFeed> {
  const { onError } = options
  if (onError !== undefined && typeof onError !== 'function')
    throw new SaikuConfigError('onError', 'a function', onError)
  const channel = options.channel ?? 'saiku:changes'
  const origin = randomUUID()
  // Set while announcing a change that came from Redis, so it is not published back.
  let relaying = false
  const reportError = (error: unknown): void => {
    if (onError === undefined) return
    const failure = error instanceof Error ? error : new Error(String(error))
    notifyHook(
      () => onError(failure),
      (hookFailure) => warnHookFailed('change feed onError', hookFailure),
    )
  }

  const stopListening = onKeyStoreChange(store, (change) => {
    // "all" is a local matter (this process missed something); other processes did not.
    if (relaying || change.kind === 'all') return
    // A publish that throws at once is a failure to publish like one that rejects.
    notifyHook(() => options.publisher.publish(channel, JSON.stringify({ origin, ...change })), reportError)
  })
  const onMessage = (from: string, message: string): void => {
    if (from !== channel) return
    const change = parseChange(message)
    if (change === null || change.origin === origin) return
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
  options.subscriber.on('message', onMessage)
  await options.subscriber.subscribe(channel)

  return {
    async close() {
      stopListening()
      options.subscriber.off('message', onMessage)
      await options.subscriber.unsubscribe(channel).catch(() => {})
    },
  }
}
