import type { Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { constants } from 'node:os'
import type { Logger } from 'pino'
import type { LogOutput } from './logger.js'

/**
 * Signals that reach the server within this long of the first are the same
 * request to stop: a Ctrl-C goes to the whole process group, and a launcher
 * (pnpm) forwards it again, so one key press arrives two or three times.
 */
export const REPEAT_WINDOW_MS = 1_000

/** How long closing the store and the clients, then writing out the last log lines, may take once the requests are done. */
export const CLEANUP_TIMEOUT_MS = 5_000

/** Of the cleanup bound, the last part kept for the last log lines: stdout may be a pipe nobody reads any more. */
export const LOG_FLUSH_TIMEOUT_MS = 500

export interface GracefulShutdownOptions {
  readonly server: Server
  readonly logger: Logger
  /** How long in-flight requests get to finish after the first signal; then they are cut and the exit code is 1. */
  readonly timeoutMs: number
  /**
   * Runs once no request is left (or the bound passed): flush batched writes, close
   * the change feeds, the store and the clients. Resolves with fields for the log.
   */
  readonly cleanup: () => Promise<Record<string, unknown>>
  readonly cleanupTimeoutMs?: number
  /** The logger's output: its lines are written out (within the bound) before the exit, and its drops reported. */
  readonly logs?: LogOutput
  /** Default `process.exit`. */
  readonly exit?: (code: number) => void
}

export interface GracefulShutdown {
  /** Starts the shutdown (what SIGTERM and SIGINT do); a second call later than REPEAT_WINDOW_MS exits at once. */
  stop(signal: NodeJS.Signals): void
  /** Requests being answered now. */
  readonly inFlight: number
}

/**
 * Graceful shutdown on SIGTERM and SIGINT: stop accepting connections, let the
 * requests in flight finish within `timeoutMs` (each answered with
 * `Connection: close`), then run `cleanup` and exit 0. Every connection with no
 * request being answered is closed at once: idle keep-alive ones, and those
 * still uploading the body of a request already answered. The bound passing
 * cuts what is left and exits 1 after the cleanup; a second signal exits at
 * once with 128 + its number.
 */
export function gracefulShutdown(options: GracefulShutdownOptions): GracefulShutdown {
  const { server, logger, timeoutMs } = options
  const cleanupTimeoutMs = options.cleanupTimeoutMs ?? CLEANUP_TIMEOUT_MS
  const exit = options.exit ?? ((code: number) => process.exit(code))
  const logFlushMs = Math.min(LOG_FLUSH_TIMEOUT_MS, Math.floor(cleanupTimeoutMs / 2))
  const inFlight = new Set<ServerResponse>()
  const connections = new Set<Socket>()
  /** Per connection, the responses not sent yet (more than one when requests are pipelined). */
  const answering = new Map<Socket, number>()
  let firstSignalAt: number | null = null

  server.on('connection', (socket: Socket) => {
    connections.add(socket)
    socket.once('close', () => {
      connections.delete(socket)
      answering.delete(socket)
    })
  })
  // First in line, so the header is set before any route can send its response.
  server.prependListener('request', (req, res: ServerResponse) => {
    const socket = req.socket
    inFlight.add(res)
    answering.set(socket, (answering.get(socket) ?? 0) + 1)
    if (firstSignalAt !== null) res.setHeader('connection', 'close')
    res.once('close', () => {
      inFlight.delete(res)
      const left = (answering.get(socket) ?? 1) - 1
      if (left > 0) answering.set(socket, left)
      else answering.delete(socket)
      if (firstSignalAt !== null) setImmediate(closeUnanswered)
    })
  })

  /**
   * Closes every connection that has no response left to send: idle keep-alive
   * connections, and a client still uploading the body of a request answered
   * before the signal (Node would read that body to the end, holding the
   * shutdown for as long as the client likes). The FIN goes first, after the
   * response already written.
   */
  function closeUnanswered(): void {
    for (const socket of connections) if (!answering.has(socket)) socket.destroySoon()
  }

  function finish(code: number, startedAt: number, fields: Record<string, unknown>): void {
    logger[code === 0 ? 'info' : 'error']({
      msg: 'stopped',
      exitCode: code,
      durationMs: Date.now() - startedAt,
      ...fields,
      ...(options.logs === undefined ? {} : { droppedLogLines: options.logs.droppedLines }),
    })
    // Bounded: a stdout nobody reads must not hold the exit.
    void (options.logs?.flush(logFlushMs) ?? Promise.resolve()).then(() => exit(code))
  }

  async function drainAndClose(signal: NodeJS.Signals, startedAt: number): Promise<void> {
    logger.info({ msg: 'shutting down', signal, inFlight: inFlight.size, timeoutMs })
    for (const res of inFlight) if (!res.headersSent) res.setHeader('connection', 'close')
    const drained = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs)
      // Stops listening at once; calls back when the last connection has closed.
      server.close(() => {
        clearTimeout(timer)
        resolve(true)
      })
      closeUnanswered()
    })
    let code = 0
    if (!(await drained)) {
      logger.error({ msg: 'shutdown bound passed: cutting requests still in flight', cut: inFlight.size, timeoutMs })
      server.closeAllConnections()
      code = 1
    }
    let timer: NodeJS.Timeout | undefined
    const bound = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`closing the store and clients took longer than ${cleanupTimeoutMs - logFlushMs} ms`)),
        cleanupTimeoutMs - logFlushMs,
      )
    })
    try {
      const fields = await Promise.race([options.cleanup(), bound])
      finish(code, startedAt, fields)
    } catch (error) {
      logger.error({
        msg: 'shutdown cleanup failed',
        err: { name: (error as Error).name, message: (error as Error).message },
      })
      finish(1, startedAt, {})
    } finally {
      clearTimeout(timer)
    }
  }

  return {
    get inFlight() {
      return inFlight.size
    },
    stop(signal) {
      const now = Date.now()
      if (firstSignalAt === null) {
        firstSignalAt = now
        void drainAndClose(signal, now)
        return
      }
      if (now - firstSignalAt < REPEAT_WINDOW_MS) return
      const code = 128 + (constants.signals[signal] ?? 0)
      logger.error({ msg: 'second signal: exiting without waiting', signal, inFlight: inFlight.size, exitCode: code })
      exit(code)
    },
  }
}
