import { isSaikuError } from './errors.js'
import { API_KEY_PATTERN } from './keys.js'

/** How long one distinct error stays quiet after it was logged. */
export const ERROR_LOG_QUIET_MS = 60_000
/** Distinct errors remembered at once; past it, the oldest is forgotten (and may be logged again). */
export const ERROR_LOG_MAX_DISTINCT = 256
// A message longer than this is cut: a log line, not a dump.
const MAX_TEXT_LENGTH = 300

export interface ErrorLogOptions {
  /** Where the line goes. Default `console.error`. */
  readonly write?: (line: string) => void
  /** The clock, in ms. Default `Date.now`. */
  readonly now?: () => number
}

interface Quiet {
  untilMs: number
  suppressed: number
}

/**
 * `Name [code]: message` for the package's own errors, whose messages it wrote; only `Name [code]`
 * for any other (a driver's message may quote a connection string, a user's a secret).
 */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return typeof error
  const code = (error as { code?: unknown }).code
  const name =
    typeof code === 'string' || typeof code === 'number'
      ? `${clean(error.name)} [${clean(String(code))}]`
      : clean(error.name)
  return !isSaikuError(error) || error.message === '' ? name : `${name}: ${clean(error.message)}`
}

function clean(text: string): string {
  const line = text.replace(API_KEY_PATTERN, 'sk_…').replace(/\s+/g, ' ').trim()
  return line.length > MAX_TEXT_LENGTH ? `${line.slice(0, MAX_TEXT_LENGTH)}…` : line
}

/**
 * `onError`'s default: one line per error (with its cause, never a stack),
 * and each distinct error at most once per minute, with how many like it went unlogged.
 * A store that is down fails every request: the log says so once a minute, not per request.
 */
export function createErrorLog(options: ErrorLogOptions = {}): (error: Error) => void {
  const write = options.write ?? ((line: string) => console.error(line))
  const now = options.now ?? Date.now
  const quiet = new Map<string, Quiet>()
  return (error) => {
    const cause = error.cause === undefined ? '' : ` (cause: ${describe(error.cause)})`
    const text = `${describe(error)}${cause}`
    const nowMs = now()
    const entry = quiet.get(text)
    if (entry !== undefined && nowMs < entry.untilMs) {
      entry.suppressed++
      return
    }
    const earlier = entry === undefined || entry.suppressed === 0 ? '' : `; ${entry.suppressed} more like it unlogged`
    quiet.delete(text)
    if (quiet.size >= ERROR_LOG_MAX_DISTINCT) {
      for (const [key, value] of quiet) if (value.untilMs <= nowMs) quiet.delete(key)
      // Still full: forget the oldest (the map keeps insertion order).
      if (quiet.size >= ERROR_LOG_MAX_DISTINCT) quiet.delete(quiet.keys().next().value!)
    }
    quiet.set(text, { untilMs: nowMs + ERROR_LOG_QUIET_MS, suppressed: 0 })
    write(
      `saiku auth: ${text}${earlier} (each error logged at most once a minute; an onError hook receives the whole error)`,
    )
  }
}
