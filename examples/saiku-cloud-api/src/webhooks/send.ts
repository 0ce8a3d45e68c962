import { lookup as dnsLookup } from 'node:dns/promises'
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { connect as netConnect, isIP } from 'node:net'
import type { Duplex } from 'node:stream'
import { connect as tlsConnect } from 'node:tls'
import { addressRefusal, webhookUrlProblem, type AddressPolicy } from './address-guard.js'

/** A resolved address, as `dns.lookup(…, { all: true })` gives it. */
export interface ResolvedAddress {
  readonly address: string
  readonly family: number
}

/** What opens the connection: to the address checked, never to a name resolved again. */
export interface ConnectTarget {
  /** The IP address connected to. */
  readonly address: string
  readonly port: number
  readonly tls: boolean
  /** The URL's host name, for TLS (SNI and certificate check); undefined for a literal address. */
  readonly servername: string | undefined
}

/**
 * How deliveries reach the network. Tests give their own: a `lookup` that answers for a test host name, and a
 * `connect` that fails the test when asked for an address that is not loopback.
 */
export interface Transport {
  readonly lookup: (hostname: string) => Promise<readonly ResolvedAddress[]>
  readonly connect: (target: ConnectTarget) => Duplex
}

export const NODE_TRANSPORT: Transport = Object.freeze({
  lookup: (hostname: string) => dnsLookup(hostname, { all: true, verbatim: true }),
  connect: (target: ConnectTarget) =>
    target.tls
      ? tlsConnect({
          host: target.address,
          port: target.port,
          ...(target.servername === undefined ? {} : { servername: target.servername }),
          ALPNProtocols: ['http/1.1'],
        })
      : netConnect({ host: target.address, port: target.port }),
})

export interface SendOptions {
  readonly policy: AddressPolicy
  readonly transport: Transport
  /** The whole attempt, resolving and the response's body included. */
  readonly timeoutMs: number
  /** Response bytes read at most; past them the connection is closed (the status is kept). */
  readonly maxResponseBytes: number
  /** Starts the attempt's deadline; returns what cancels it. Default: a timer. Tests fire it themselves. */
  readonly schedule?: (callback: () => void, ms: number) => () => void
}

const realSchedule = (callback: () => void, ms: number): (() => void) => {
  const timer = setTimeout(callback, ms)
  timer.unref()
  return () => clearTimeout(timer)
}

/** One attempt's outcome. `status` is null when no response came (refused address, network error, timeout). */
export interface SendResult {
  readonly status: number | null
  /** Why the attempt failed, in a few words for the delivery log; null for a 2xx. */
  readonly error: string | null
}

/** Resolves the host and picks the first address the policy allows; refuses when any answer is refused. */
async function pickAddress(host: string, options: SendOptions): Promise<string> {
  const answers: readonly ResolvedAddress[] =
    isIP(host) !== 0 ? [{ address: host, family: isIP(host) }] : await options.transport.lookup(host)
  if (answers.length === 0) throw new SendError(`${host} has no address`)
  // Every answer is checked: a name that also points inside is refused, whichever address a retry would use.
  for (const answer of answers) {
    const refusal = addressRefusal(answer.address, options.policy)
    if (refusal !== null) throw new SendError(`refused: ${host} resolves to ${refusal}`)
  }
  return answers[0]!.address
}

class SendError extends Error {}

/**
 * POSTs one signed delivery. Redirects are not followed (a 3xx is a failed attempt), the attempt ends after
 * `timeoutMs`, at most `maxResponseBytes` of the answer are read, and the connection goes only to an address
 * the policy allows, checked after resolving: what is checked is what is connected to.
 */
export async function sendDelivery(
  urlText: string,
  headers: Readonly<Record<string, string>>,
  body: string,
  options: SendOptions,
): Promise<SendResult> {
  const problem = webhookUrlProblem(urlText, options.policy)
  if (problem !== null) return { status: null, error: `refused: ${problem}` }
  const url = new URL(urlText)
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
  const tls = url.protocol === 'https:'
  const port = url.port === '' ? (tls ? 443 : 80) : Number(url.port)
  let request: ClientRequest | undefined
  let cancel: () => void = () => {}
  const deadline = new Promise<never>((_, reject) => {
    cancel = (options.schedule ?? realSchedule)(() => {
      request?.destroy()
      reject(new SendError(`no answer within ${options.timeoutMs} ms`))
    }, options.timeoutMs)
  })
  deadline.catch(() => {})
  const attempt = (async (): Promise<SendResult> => {
    const address = await pickAddress(host, options)
    const target: ConnectTarget = { address, port, tls, servername: isIP(host) === 0 ? host : undefined }
    return new Promise<SendResult>((resolve, reject) => {
      const make = tls ? httpsRequest : httpRequest
      request = make({
        method: 'POST',
        host: address,
        port,
        path: `${url.pathname}${url.search}`,
        headers: {
          host: url.host,
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(body)),
          'user-agent': 'Saiku-Webhooks/1',
          ...headers,
        },
        // One connection per attempt, to the address checked above.
        createConnection: () => options.transport.connect(target),
        maxHeaderSize: 16_384,
      })
      request.on('error', (error) => reject(new SendError(networkError(error))))
      request.on('response', (response: IncomingMessage) => {
        const status = response.statusCode ?? 0
        let read = 0
        const done = () => resolve(outcome(status))
        response.on('data', (chunk: Buffer) => {
          read += chunk.length
          // The status is what counts; a long answer is cut off, not waited for.
          if (read > options.maxResponseBytes) {
            response.destroy()
            done()
          }
        })
        response.on('end', done)
        response.on('error', done)
        response.on('close', done)
      })
      request.end(body)
    })
  })()
  try {
    return await Promise.race([attempt, deadline])
  } catch (error) {
    return { status: null, error: error instanceof SendError ? error.message : networkError(error) }
  } finally {
    cancel()
    attempt.catch(() => {})
    request?.destroy()
  }
}

function outcome(status: number): SendResult {
  if (status >= 200 && status < 300) return { status, error: null }
  if (status >= 300 && status < 400) return { status, error: 'redirect not followed' }
  return { status, error: `HTTP ${status}` }
}

/** A network error in a few words: its code where it has one (ECONNREFUSED), never a stack. */
function networkError(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code === 'string') return code
  return error instanceof Error ? error.message.slice(0, 200) : 'network error'
}
