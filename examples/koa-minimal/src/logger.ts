import { pino, type Logger } from 'pino'

/** JSON lines on stdout. Nothing logged here ever holds a header value, a key or a digest. */
export function createLogger(level: string): Logger {
  return pino({ level, base: null, timestamp: pino.stdTimeFunctions.isoTime })
}
