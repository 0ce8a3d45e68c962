import { once } from 'node:events'
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type RequestListener,
} from 'node:http'
import type { AddressInfo } from 'node:net'

export interface RawResponse {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  /** What arrived before the response ended or the connection closed. */
  readonly body: string
}

/**
 * A request with raw header lines, sent exactly as given, for what supertest cannot
 * send (a repeated Authorization header, an absolute-form target) or read (a
 * response cut off after it started). Serves `handler` on a loopback port for the
 * one request.
 */
export async function rawRequest(
  handler: RequestListener,
  path: string,
  rawHeaders: string[],
  method = 'GET',
): Promise<RawResponse> {
  const server = createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  try {
    const { port } = server.address() as AddressInfo
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      path,
      method,
      headers: ['Host', `127.0.0.1:${port}`, ...rawHeaders],
    })
    req.end()
    const [res] = (await once(req, 'response')) as [IncomingMessage]
    let body = ''
    res.on('data', (chunk: Buffer) => (body += chunk.toString()))
    await new Promise((resolve) => {
      res.on('close', resolve)
      res.on('error', resolve)
    })
    return { status: res.statusCode!, headers: res.headers, body }
  } finally {
    server.close()
  }
}

/** A GET with raw header lines: {@link rawRequest}. */
export function rawGet(handler: RequestListener, path: string, rawHeaders: string[]): Promise<RawResponse> {
  return rawRequest(handler, path, rawHeaders, 'GET')
}
