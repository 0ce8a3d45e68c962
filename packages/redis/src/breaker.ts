// CRC16-XMODEM, as Redis Cluster hashes keys to its 16384 slots.
const CRC16_TABLE = new Uint16Array(256)
for (let i = 0; i < 256; i++) {
  let crc = i << 8
  for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  CRC16_TABLE[i] = crc
}

/** The Cluster slot of a key: only its `{hash tag}` is hashed when it has one. */
export function keySlot(key: string): number {
  const open = key.indexOf('{')
  if (open !== -1) {
    const close = key.indexOf('}', open + 1)
    if (close > open + 1) key = key.slice(open + 1, close)
  }
  const bytes = Buffer.from(key)
  let crc = 0
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ byte) & 0xff]!
  return crc & 0x3fff
}

interface NodeState {
  /** Until when calls to this node fail at once. */
  openUntilMs: number
  /** A call let through after the pause, to see whether the node is back. */
  probing: boolean
  /** A single Redis's connection when the call failed: a new one means it is back. */
  connection: unknown
}

export interface NodeBreaker {
  /** The node a key lives on (its master's "host:port"; one name for a single Redis). */
  nodeOf(key: string): string
  /** Whether a call to the node may go out now: false while it is known to be down. */
  allow(node: string, nowMs: number): boolean
  /** The client's connection now, to hand back to `failed` for a call that starts now. */
  connection(): unknown
  /**
   * The call did not answer in time, or failed: calls to the node fail at once for `pauseMs`.
   * `startedOn`: the connection the call went out on; a failure of one already replaced
   * (a call that outlived its socket) says nothing of the node now.
   */
  failed(node: string, nowMs: number, startedOn: unknown): void
  succeeded(node: string): void
}

/** What the breaker reads of a client: a Cluster's slot table, or a single Redis's state and socket. */
export interface BreakerClient {
  readonly status: string
  on(event: 'ready', listener: () => void): unknown
}

/**
 * Fails fast while a Redis node is known to be down: after a call to a node fails or
 * outlasts its deadline, every call for that node's slots fails at once for `pauseMs`;
 * then one call goes through to see whether it is back. Other nodes are not affected.
 */
export function createNodeBreaker(client: BreakerClient, pauseMs: number): NodeBreaker {
  const nodes = new Map<string, NodeState>()
  // A Cluster's slot table: each slot's master first, as "host:port".
  const slots = (client as { slots?: unknown }).slots
  const isCluster = Array.isArray(slots)
  // A single Redis that is back is tried at once: no request waits out a pause after recovery. A
  // Cluster says "ready" again on every slot refresh, dead node or not: its nodes are probed instead.
  // ioredis sets "ready" a tick before it says so: a new socket that is ready is the same news, seen at once.
  if (!isCluster) client.on('ready', () => nodes.clear())
  const connection = (): unknown => (client as { stream?: unknown }).stream
  return {
    nodeOf(key) {
      if (!isCluster) return '*'
      return (slots as (string[] | undefined)[])[keySlot(key)]?.[0] ?? '?'
    },
    allow(node, nowMs) {
      const state = nodes.get(node)
      if (state === undefined) return true
      if (!isCluster && client.status === 'ready' && state.connection !== connection()) {
        nodes.delete(node)
        return true
      }
      if (nowMs < state.openUntilMs || state.probing) return false
      state.probing = true
      return true
    },
    connection,
    failed(node, nowMs, startedOn) {
      if (!isCluster && startedOn !== connection()) return
      nodes.set(node, { openUntilMs: nowMs + pauseMs, probing: false, connection: isCluster ? undefined : startedOn })
    },
    succeeded(node) {
      if (nodes.size > 0) nodes.delete(node)
    },
  }
}

const sharedBreakers = new WeakMap<BreakerClient, Map<number, NodeBreaker>>()

/**
 * The breaker of `client` for `pauseMs`, shared by every limiter built on that client:
 * what one learns of a node's health holds for all, and the client carries one
 * "ready" listener however many limiters use it.
 */
export function nodeBreakerFor(client: BreakerClient, pauseMs: number): NodeBreaker {
  let byPause = sharedBreakers.get(client)
  if (byPause === undefined) sharedBreakers.set(client, (byPause = new Map<number, NodeBreaker>()))
  let breaker = byPause.get(pauseMs)
  if (breaker === undefined) byPause.set(pauseMs, (breaker = createNodeBreaker(client, pauseMs)))
  return breaker
}
