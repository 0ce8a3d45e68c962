import { pino, type Logger } from 'pino'

/**
 * How many bytes of log lines may wait for stdout before new lines are dropped
 * (and counted): about 20,000 request lines, enough to ride out a slow reader,
 * small enough that a reader that stopped cannot grow the heap.
 */
export const DEFAULT_LOG_BUFFER_BYTES = 4 * 1024 * 1024

/** Where the log lines go: written without ever blocking the event loop. */
export interface LogOutput {
  /** Queues one line; past the buffer bound, or once the stream has failed, drops it and counts it. */
  write(line: string): void
  /** Lines dropped so far. */
  readonly droppedLines: number
  /** Resolves once every queued line is written (true), or when `timeoutMs` has passed (false). */
  flush(timeoutMs: number): Promise<boolean>
}

/** The part of a writable stream the output uses (process.stdout is one). */
export interface LogStream {
  write(chunk: string, callback: (error?: Error | null) => void): boolean
  readonly writableLength: number
  on(event: 'error', listener: (error: Error) => void): unknown
}

/**
 * Log lines to `stream`, buffered in memory up to `maxBufferedBytes` (counted
 * in UTF-16 units, which is close enough for a bound).
 *
 * process.stdout on a pipe writes asynchronously: a reader that stops reading
 * (a supervisor stopping, a paused pager) leaves the lines queued here, never
 * the event loop waiting, so signals and the shutdown still run. pino's own
 * destination, by contrast, flushes synchronously at exit and spins forever on
 * a full pipe. Once lines flow again, a `log lines dropped` line says how many
 * were lost.
 */
export function createLogOutput(stream: LogStream, maxBufferedBytes = DEFAULT_LOG_BUFFER_BYTES): LogOutput {
  let droppedLines = 0
  let reportedDrops = 0
  let failed = false
  let pending = 0
  const idle = new Set<() => void>()
  const written = () => {
    if (--pending === 0) for (const resolve of idle) resolve()
  }
  // A reader that went away (EPIPE) is no reason to crash the server: stop writing, count what is lost.
  stream.on('error', () => {
    failed = true
  })
  const send = (text: string) => {
    pending++
    stream.write(text, written)
  }
  return {
    get droppedLines() {
      return droppedLines
    },
    write(line) {
      if (failed || stream.writableLength + line.length > maxBufferedBytes) {
        droppedLines++
        return
      }
      if (droppedLines > reportedDrops) {
        // The same shape as pino's lines, level 40 (warn).
        const count = droppedLines - reportedDrops
        reportedDrops = droppedLines
        send(`{"level":40,"time":"${new Date().toISOString()}","msg":"log lines dropped","count":${count}}\n`)
      }
      send(line)
    },
    flush(timeoutMs) {
      if (failed || pending === 0) return Promise.resolve(!failed)
      return new Promise((resolve) => {
        const done = (flushed: boolean) => {
          clearTimeout(timer)
          idle.delete(onIdle)
          resolve(flushed && !failed)
        }
        const onIdle = () => done(true)
        const timer = setTimeout(() => done(false), timeoutMs)
        idle.add(onIdle)
      })
    },
  }
}

/** JSON lines on stdout. Nothing logged here ever holds a header value, a key or a digest. */
export function createLogger(level: string, output: LogOutput = createLogOutput(process.stdout)): Logger {
  return pino({ level, base: null, timestamp: pino.stdTimeFunctions.isoTime }, { write: (line) => output.write(line) })
}
