import { once } from 'node:events'
import { createConnection, createServer, type Socket } from 'node:net'

/** A TCP proxy on loopback that a fault test cuts (every connection dropped, new ones refused) and restores. */
export interface TcpProxy {
  readonly port: number
  /** Drops every open connection and resets new ones until restored. */
  cut(): void
  restore(): void
  /** Keeps connections open but stops passing bytes either way (a stalled link); `restore` lets them flow again. */
  stall(): void
  /**
   * A black hole: open connections and new ones stay open but pass no byte either way; the bytes
   * wait, as TCP keeps retransmitting them, and flow on at `restore`.
   */
  freeze(): void
  /** Freezes the connections open now only (a NAT that forgot them): new ones flow. */
  freezeOpen(): void
  /** Connections open now (each a client and its upstream). */
  readonly openConnections: number
  /** Connections accepted since the proxy started, including refused ones. */
  readonly acceptedConnections: number
  close(): Promise<void>
}

export async function tcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  let state: 'open' | 'cut' | 'stalled' | 'frozen' = 'open'
  let accepted = 0
  const pairs = new Set<{ client: Socket; upstream: Socket }>()
  const server = createServer((client) => {
    accepted++
    if (state === 'cut') {
      client.resetAndDestroy()
      return
    }
    const upstream = createConnection({ host: targetHost, port: targetPort })
    const pair = { client, upstream }
    pairs.add(pair)
    const forward = (from: Socket, to: Socket) =>
      from.on('data', (chunk: Buffer) => {
        if (state === 'open') to.write(chunk)
      })
    forward(client, upstream)
    forward(upstream, client)
    if (state === 'frozen') {
      client.pause()
      upstream.pause()
    }
    const drop = () => {
      pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  const cut = (): void => {
    state = 'cut'
    for (const { client, upstream } of pairs) {
      client.resetAndDestroy()
      upstream.destroy()
    }
    pairs.clear()
  }
  return {
    port,
    cut,
    stall() {
      state = 'stalled'
    },
    freeze() {
      state = 'frozen'
      for (const { client, upstream } of pairs) {
        client.pause()
        upstream.pause()
      }
    },
    freezeOpen() {
      for (const { client, upstream } of pairs) {
        client.pause()
        upstream.pause()
      }
    },
    restore() {
      state = 'open'
      for (const { client, upstream } of pairs) {
        client.resume()
        upstream.resume()
      }
    },
    get openConnections() {
      return pairs.size
    },
    get acceptedConnections() {
      return accepted
    },
    async close() {
      cut()
      server.close()
      await once(server, 'close')
    },
  }
}
