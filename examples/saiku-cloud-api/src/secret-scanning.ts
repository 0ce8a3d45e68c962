// Leaked keys reported by GitHub's secret scanning partner program: GitHub finds a string that matches
// our key pattern in a public repository, gist or package, and posts it here, signed. A key that is
// ours is revoked (or only reported), recorded in Activity, and announced: through `revokeLeaked`, in the
// revocation's own transaction, or else through `onLeaked`.
import { createHash, createPublicKey, timingSafeEqual, verify, type KeyObject } from 'node:crypto'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { isIP } from 'node:net'
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express'
import type { Logger } from 'pino'
import { clientKey, parseApiKey, SaikuHttpError, type ApiKeyRecord, type KeyManager, type KeyStore } from '@saiku/core'
import { ConfigError } from './config.js'

/** Where GitHub publishes the keys that sign its secret scanning alerts. */
export const GITHUB_SECRET_SCANNING_KEYS_URL = 'https://api.github.com/meta/public_keys/secret_scanning'

/** What the server does with a live key that an alert shows leaked. */
export type LeakAction = 'revoke' | 'report'

export interface SecretScanningConfig {
  /** GITHUB_SECRET_SCANNING_KEYS_URL: the public keys document; the route exists only when it is set. */
  readonly keysUrl: string
  /** GITHUB_SECRET_SCANNING_ACTION: `revoke` (default) or `report` (record and announce, leave the key working). */
  readonly action: LeakAction
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]'])

/** Whether a URL's host is this machine: only there may the keys come over plain http (a test's own server). */
function isLoopbackHost(hostname: string): boolean {
  if (LOOPBACK_HOSTS.has(hostname)) return true
  return isIP(hostname) === 4 && hostname.startsWith('127.')
}

/**
 * GITHUB_SECRET_SCANNING_KEYS_URL and GITHUB_SECRET_SCANNING_ACTION. Unset or empty URL: no route,
 * undefined. The URL must be https (http only to a loopback host, for a local keys server).
 */
export function readSecretScanningConfig(env: NodeJS.ProcessEnv = process.env): SecretScanningConfig | undefined {
  const value = env.GITHUB_SECRET_SCANNING_KEYS_URL
  const actionValue = env.GITHUB_SECRET_SCANNING_ACTION
  if (value === undefined || value === '') {
    if (actionValue !== undefined && actionValue !== '')
      throw new ConfigError(
        'GITHUB_SECRET_SCANNING_ACTION: set GITHUB_SECRET_SCANNING_KEYS_URL too, or the secret scanning route does not exist',
      )
    return undefined
  }
  const shown = JSON.stringify(value.length > 200 ? `${value.slice(0, 200)}…` : value)
  let url: URL | null = null
  try {
    url = new URL(value)
  } catch {
    // Reported below.
  }
  if (
    url === null ||
    !(url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname))) ||
    url.username !== '' ||
    url.password !== ''
  )
    throw new ConfigError(
      `GITHUB_SECRET_SCANNING_KEYS_URL: expected an https URL such as ${GITHUB_SECRET_SCANNING_KEYS_URL} (http only to a loopback host), got ${shown}`,
    )
  const action = actionValue === undefined || actionValue === '' ? 'revoke' : actionValue
  if (action !== 'revoke' && action !== 'report')
    throw new ConfigError(
      `GITHUB_SECRET_SCANNING_ACTION: expected "revoke" or "report", got ${JSON.stringify(actionValue)}`,
    )
  return { keysUrl: url.href, action }
}

/** A document the server could not get: the alert is answered 503, and GitHub sends it again later. */
export class KeysUnavailableError extends Error {
  override readonly name = 'KeysUnavailableError'
}

export interface FetchLimits {
  /** The whole fetch, connection to last byte. */
  readonly timeoutMs: number
  readonly maxBytes: number
}

/**
 * GETs a small JSON document: a 200 only (a redirect is not followed), at most `maxBytes`,
 * within `timeoutMs`; anything else rejects with a KeysUnavailableError saying why.
 */
export function fetchDocument(url: string, limits: FetchLimits): Promise<string> {
  return new Promise((resolve, reject) => {
    const target = new URL(url)
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest
    let settled = false
    const fail = (reason: string) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      req.destroy()
      reject(new KeysUnavailableError(`${target.origin}${target.pathname}: ${reason}`))
    }
    const req = send(target, {
      method: 'GET',
      headers: { accept: 'application/json', 'user-agent': 'saiku-cloud-api' },
    })
    const timer = setTimeout(() => fail(`no answer within ${limits.timeoutMs} ms`), limits.timeoutMs)
    req.on('error', (error: NodeJS.ErrnoException) => fail(error.code ?? error.message))
    req.on('response', (res: IncomingMessage) => {
      if (res.statusCode !== 200) {
        res.resume()
        return fail(
          res.statusCode !== undefined && res.statusCode >= 300 && res.statusCode < 400
            ? `answered a redirect (${res.statusCode}), which is not followed`
            : `answered ${res.statusCode}`,
        )
      }
      const declared = Number(res.headers['content-length'])
      if (Number.isFinite(declared) && declared > limits.maxBytes)
        return fail(`the document is larger than ${limits.maxBytes} bytes`)
      const chunks: Buffer[] = []
      let length = 0
      res.on('data', (chunk: Buffer) => {
        length += chunk.length
        if (length > limits.maxBytes) return fail(`the document is larger than ${limits.maxBytes} bytes`)
        chunks.push(chunk)
      })
      res.on('error', (error) => fail(error.message))
      res.on('end', () => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        resolve(Buffer.concat(chunks).toString('utf8'))
      })
    })
    req.end()
  })
}

/** GitHub's signing keys by identifier, from its public keys document. */
export interface GithubKeyring {
  /** The key with this identifier: fetched on first use, fetched again (once) when it is unknown; null when still unknown. */
  find(identifier: string): Promise<KeyObject | null>
  /** How many times the document was fetched. */
  readonly fetches: number
}

export interface KeyringOptions extends FetchLimits {
  readonly url: string
  /** Unknown identifiers refetch the document at most this often, so a stream of made-up ones costs one fetch. */
  readonly refetchIntervalMs: number
  readonly now: () => number
  readonly fetch?: (url: string, limits: FetchLimits) => Promise<string>
}

/** Reads `{public_keys: [{key_identifier, key, is_current}]}`: the P-256 keys in it by identifier. */
export function parseKeysDocument(text: string): Map<string, KeyObject> {
  let document: unknown
  try {
    document = JSON.parse(text)
  } catch {
    throw new KeysUnavailableError('the public keys document is not JSON')
  }
  const entries = (document as { public_keys?: unknown } | null)?.public_keys
  if (!Array.isArray(entries)) throw new KeysUnavailableError('the public keys document has no public_keys list')
  const keys = new Map<string, KeyObject>()
  for (const entry of entries as unknown[]) {
    const { key_identifier: identifier, key } = (entry ?? {}) as Record<string, unknown>
    if (typeof identifier !== 'string' || typeof key !== 'string') continue
    try {
      const publicKey = createPublicKey(key)
      // The program signs with ECDSA over P-256: a key of another kind verifies nothing here.
      if (publicKey.asymmetricKeyType === 'ec' && publicKey.asymmetricKeyDetails?.namedCurve === 'prime256v1')
        keys.set(identifier, publicKey)
    } catch {
      // Not a public key in PEM: skipped, like a key of another curve.
    }
  }
  return keys
}

export function createGithubKeyring(options: KeyringOptions): GithubKeyring {
  const fetchText = options.fetch ?? fetchDocument
  let keys: Map<string, KeyObject> | null = null
  let refetchedAtMs = -Infinity
  let inFlight: Promise<Map<string, KeyObject>> | null = null
  let fetches = 0
  // Concurrent alerts share one fetch; a failed one is not kept, so the next alert tries again.
  const load = (): Promise<Map<string, KeyObject>> => {
    inFlight ??= (async () => {
      fetches++
      try {
        const loaded = parseKeysDocument(await fetchText(options.url, options))
        keys = loaded
        return loaded
      } finally {
        inFlight = null
      }
    })()
    return inFlight
  }
  return {
    get fetches() {
      return fetches
    },
    async find(identifier) {
      if (inFlight !== null) await inFlight.catch(() => {})
      if (keys === null) return (await load()).get(identifier) ?? null
      const known = keys.get(identifier)
      if (known !== undefined) return known
      // GitHub rotated its keys, or the identifier is made up: one fetch tells, then no more for a while.
      const nowMs = options.now()
      if (nowMs - refetchedAtMs < options.refetchIntervalMs && nowMs >= refetchedAtMs) return null
      refetchedAtMs = nowMs
      return (await load()).get(identifier) ?? null
    },
  }
}

/** Counts each source address's requests per fixed minute, in at most `maxAddresses` entries. */
function createAddressBudget(perMinute: number, maxAddresses: number) {
  const windows = new Map<string, { startMs: number; count: number }>()
  return {
    /** 0 when the request may go on, else the milliseconds until the address has room. */
    charge(address: string, nowMs: number): number {
      let window = windows.get(address)
      if (window === undefined || nowMs >= window.startMs + 60_000 || nowMs < window.startMs) {
        windows.delete(address)
        if (windows.size >= maxAddresses) windows.delete(windows.keys().next().value!)
        window = { startMs: nowMs, count: 0 }
        windows.set(address, window)
      }
      if (window.count >= perMinute) return window.startMs + 60_000 - nowMs
      window.count++
      return 0
    },
  }
}

/** One entry of GitHub's alert. */
export interface LeakReport {
  readonly token: string
  readonly type: string
  readonly url: string | null
  readonly source: string | null
}

/** One entry of the answer, in the alert's order. */
export interface LeakVerdict {
  /** Hex SHA-256 of the token, as the partner program names it. */
  readonly token_hash: string
  readonly token_type: string
  readonly label: 'true_positive' | 'false_positive'
}

/** What `onLeaked` receives: never the token, only the key's ID and a short fingerprint of it. */
export interface LeakedKeyEvent {
  readonly tenantId: string
  readonly keyId: string
  /** The key's label, as the tenant named it. */
  readonly label: string
  /** The first 12 hex digits of the token's SHA-256. */
  readonly tokenFingerprint: string
  /** Where the token was found (a file on GitHub, a package). */
  readonly url: string | null
  /** What GitHub scanned: `content`, `commit`, `npm`, … */
  readonly source: string | null
  /** True when the key was revoked; false when the server only reports (GITHUB_SECRET_SCANNING_ACTION=report). */
  readonly revoked: boolean
  readonly at: Date
}

/** The Activity line of a leak. */
export interface LeakActivity {
  readonly tenantId: string
  readonly keyId: string
  readonly action: 'key.leaked'
  readonly target: string
  readonly ip: string | null
}

/** The actor of a leak's Activity line. */
export const SECRET_SCANNING_ACTOR = 'GitHub secret scanning'

export interface SecretScanningOptions {
  readonly config: SecretScanningConfig
  readonly store: KeyStore
  /** Revokes through the key manager, so every authenticator drops the key from its cache. */
  readonly keys: KeyManager
  readonly logger: Logger
  /**
   * Records the leak in the tenant's Activity; when `report` leaves the key working, `alreadyRecorded`
   * keeps a replayed alert from adding a second line. Without them the leak is only logged.
   */
  readonly activity?: {
    record(activity: LeakActivity, at: Date): Promise<void>
    alreadyRecorded(activity: LeakActivity): Promise<boolean>
  }
  /**
   * Announces a leak to the tenant (the `key.leaked` event). May be async and reject: a failure is logged, never
   * undoes the revocation. Not called for a revocation when `revokeLeaked` is given: that writes the event itself.
   */
  readonly onLeaked?: (event: LeakedKeyEvent) => void | Promise<void>
  /**
   * Revokes the leaked key and writes its announcement in one transaction, so a crash between the two cannot lose
   * the announcement (a replay finds the key revoked and announces nothing). Resolves true when this call revoked
   * the key; a rejection or a hang past `storeTimeoutMs` answers 503, and GitHub sends the alert again. It must
   * tell this process's authenticators (as `@saiku/sqlite`'s and `@saiku/postgres`'s `revokeKey` do). Without it,
   * the key manager revokes and `onLeaked` announces, in two writes.
   */
  readonly revokeLeaked?: (record: ApiKeyRecord, event: LeakedKeyEvent) => Promise<boolean>
  /** Most requests per source address per minute. Default 60. */
  readonly perAddressPerMinute?: number
  /** The largest alert body. Default 512 KiB. */
  readonly maxBodyBytes?: number
  /** Most tokens in one alert. Default 1000. */
  readonly maxTokens?: number
  /** The keys document fetch: its deadline (default 10000) and largest size (default 64 KiB). */
  readonly fetchTimeoutMs?: number
  readonly maxKeysBytes?: number
  /** Default 60000. */
  readonly refetchIntervalMs?: number
  /** Deadline of each key store and Activity call, and of `onLeaked`. Default 5000. */
  readonly storeTimeoutMs?: number
  readonly now?: () => number
  /** How the keys document is fetched. Default {@link fetchDocument}. */
  readonly fetch?: (url: string, limits: FetchLimits) => Promise<string>
}

export const SECRET_SCANNING_PATH = '/secret-scanning/github'
const MAX_TOKEN_LENGTH = 1_024
const MAX_FIELD_LENGTH = 2_048
// Shown in Activity and the event: enough to find the place, bounded whatever GitHub sends.
const MAX_SHOWN_URL_LENGTH = 500

/** `pending`, or a rejection once `timeoutMs` has passed. */
function withDeadline<T>(pending: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)
  })
  return Promise.race([pending, deadline]).finally(() => clearTimeout(timer))
}

const sha256Hex = (text: string): string => createHash('sha256').update(text).digest('hex')

function shortText(value: string, max: number): string {
  // Control and format characters (a newline, a bidi override) or a lone surrogate would garble a log line, the
  // CLI's table or the page: each is replaced, then the text cut.
  const clean = value.replace(/[\p{Cc}\p{Cf}\p{Cs}]/gu, '?')
  return clean.length > max ? `${clean.slice(0, max)}…` : clean
}

/** The alert's entries, or why they are not an alert (400). */
function readReports(body: unknown, maxTokens: number): LeakReport[] {
  if (!Array.isArray(body))
    throw new SaikuHttpError('invalid_request', 'Expected a JSON array of {token, type, url, source}.')
  if (body.length > maxTokens)
    throw new SaikuHttpError(
      'payload_too_large',
      `An alert holds at most ${maxTokens} tokens; this one holds ${body.length}. Send them in several alerts.`,
    )
  return body.map((entry: unknown, index) => {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry))
      throw new SaikuHttpError('invalid_request', `Entry ${index}: expected an object with token and type.`)
    const { token, type, url, source } = entry as Record<string, unknown>
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH)
      throw new SaikuHttpError(
        'invalid_request',
        `Entry ${index}: token must be a string of 1 to ${MAX_TOKEN_LENGTH} characters.`,
      )
    if (typeof type !== 'string' || type.length === 0 || type.length > MAX_FIELD_LENGTH)
      throw new SaikuHttpError(
        'invalid_request',
        `Entry ${index}: type must be a string of 1 to ${MAX_FIELD_LENGTH} characters.`,
      )
    for (const [name, value] of [
      ['url', url],
      ['source', source],
    ] as const) {
      if (value !== undefined && value !== null && (typeof value !== 'string' || value.length > MAX_FIELD_LENGTH))
        throw new SaikuHttpError(
          'invalid_request',
          `Entry ${index}: ${name} must be a string of at most ${MAX_FIELD_LENGTH} characters.`,
        )
    }
    return {
      token,
      type,
      url: typeof url === 'string' ? url : null,
      source: typeof source === 'string' ? source : null,
    }
  })
}

const IDENTIFIER = /^[\w.:=+/-]{1,256}$/
const SIGNATURE = /^[A-Za-z0-9+/]{1,1024}={0,2}$/

/** Throws a ConfigError naming the first option that is not what it must be. */
export function checkSecretScanningOptions(
  options: Omit<SecretScanningOptions, 'store' | 'keys' | 'logger' | 'activity'>,
): void {
  const { config } = options
  for (const name of [
    'perAddressPerMinute',
    'maxBodyBytes',
    'maxTokens',
    'fetchTimeoutMs',
    'maxKeysBytes',
    'refetchIntervalMs',
    'storeTimeoutMs',
  ] as const) {
    const value = options[name]
    if (value !== undefined && !(Number.isSafeInteger(value) && value > 0))
      throw new ConfigError(`secretScanning.${name}: expected a positive whole number, got ${JSON.stringify(value)}`)
  }
  for (const name of ['onLeaked', 'revokeLeaked'] as const) {
    const value: unknown = options[name]
    if (value !== undefined && typeof value !== 'function')
      throw new ConfigError(`secretScanning.${name}: expected a function, got ${typeof value}`)
  }
  if (config.action !== 'revoke' && config.action !== 'report')
    throw new ConfigError(
      `secretScanning.config.action: expected "revoke" or "report", got ${JSON.stringify(config.action)}`,
    )
}

/**
 * POST /secret-scanning/github: the raw body read (the signature covers its bytes), the signature
 * verified against GitHub's published key, then each token checked: its checksum first (garbage
 * costs no store call), then the store.
 */
export function createSecretScanningRoute(options: SecretScanningOptions): express.Router {
  checkSecretScanningOptions(options)
  const { store, keys, logger, config } = options
  const now = options.now ?? Date.now
  const maxTokens = options.maxTokens ?? 1_000
  const budget = createAddressBudget(options.perAddressPerMinute ?? 60, 10_000)
  const keyring = createGithubKeyring({
    url: config.keysUrl,
    timeoutMs: options.fetchTimeoutMs ?? 10_000,
    maxBytes: options.maxKeysBytes ?? 64 * 1024,
    refetchIntervalMs: options.refetchIntervalMs ?? 60_000,
    now,
    ...(options.fetch === undefined ? {} : { fetch: options.fetch }),
  })
  // Leaks being handled in this process: a replay that arrives meanwhile waits for the first.
  const pending = new Map<string, Promise<void>>()
  const reported = new Set<string>()
  const storeTimeoutMs = options.storeTimeoutMs ?? 5_000

  /**
   * Waits for `onLeaked` (an outbox write is done before GitHub hears back), at most `storeTimeoutMs`;
   * a rejection, a throw or a hang is logged, and the revocation stands.
   */
  const announce = async (event: LeakedKeyEvent): Promise<void> => {
    if (options.onLeaked === undefined) return
    try {
      await withDeadline(
        Promise.resolve().then(() => options.onLeaked!(event)),
        storeTimeoutMs,
      )
    } catch (error) {
      logger.error({
        msg: 'leaked key announcement failed',
        keyId: event.keyId,
        err: { message: error instanceof Error ? error.message : String(error) },
      })
    }
  }

  /** A key store call within the deadline; failed or late, a 503 that GitHub retries. */
  const keyStoreCall = async <T>(call: () => Promise<T>): Promise<T> => {
    try {
      return await withDeadline(Promise.resolve().then(call), storeTimeoutMs)
    } catch (error) {
      logger.error({ msg: 'store failure', err: { message: error instanceof Error ? error.message : String(error) } })
      throw new SaikuHttpError('service_unavailable', 'The key store is unavailable. Retry later.', {
        'retry-after': '5',
      })
    }
  }

  /** A token whose checksum holds and whose key exists: revoke it (or report it) once. */
  async function handleLeak(report: LeakReport, keyId: string, tokenHash: string, ip: string | null): Promise<boolean> {
    const record = await keyStoreCall(() => store.findKey(keyId))
    if (record === null) return false
    const digest = Buffer.from(record.secretDigest, 'hex')
    const presented = Buffer.from(tokenHash, 'hex')
    if (digest.length !== presented.length || !timingSafeEqual(digest, presented)) return false
    const fingerprint = tokenHash.slice(0, 12)
    const url = report.url === null ? null : shortText(report.url, MAX_SHOWN_URL_LENGTH)
    const source = report.source === null ? null : shortText(report.source, 64)
    const revoking = config.action === 'revoke'
    const activity: LeakActivity = {
      tenantId: record.tenantId,
      keyId,
      action: 'key.leaked',
      target: `${keyId} found at ${url ?? 'an unknown place'} (sha256 ${fingerprint}…); ${revoking ? 'revoked' : 'reported only, not revoked'}`,
      ip,
    }
    const dedupe = `${keyId}\n${activity.target}`
    const before = pending.get(dedupe)
    if (before !== undefined) await before.catch(() => {})
    const work = (async () => {
      if (record.revokedAt !== null && revoking) return
      const at = new Date(now())
      const event: LeakedKeyEvent = {
        tenantId: record.tenantId,
        keyId,
        label: record.label,
        tokenFingerprint: fingerprint,
        url,
        source,
        revoked: revoking,
        at,
      }
      // Announced with the revocation, in its transaction: never a second time below.
      const announcedWithRevocation = revoking && options.revokeLeaked !== undefined
      let changed: boolean
      if (announcedWithRevocation) changed = await keyStoreCall(() => options.revokeLeaked!(record, event))
      else if (revoking) changed = await keyStoreCall(() => keys.revoke(record.tenantId, keyId))
      else {
        // Reported once: by this process (a bounded memory), or by any, as Activity says; when Activity cannot
        // say in time, reported again rather than not at all.
        changed =
          !reported.has(dedupe) &&
          !(await withDeadline(
            Promise.resolve().then(() => options.activity?.alreadyRecorded(activity)),
            storeTimeoutMs,
          ).catch(() => false))
        if (changed) {
          if (reported.size >= 10_000) reported.delete(reported.values().next().value!)
          reported.add(dedupe)
        }
      }
      if (!changed) return
      logger.warn({
        msg: revoking ? 'leaked key revoked' : 'leaked key reported',
        tenantId: record.tenantId,
        keyId,
        tokenFingerprint: fingerprint,
        url,
        source,
      })
      if (options.activity !== undefined)
        await withDeadline(
          Promise.resolve().then(() => options.activity!.record(activity, at)),
          storeTimeoutMs,
        ).catch((error: unknown) =>
          logger.error({
            msg: 'activity write failed',
            err: { message: error instanceof Error ? error.message : String(error) },
          }),
        )
      if (!announcedWithRevocation) await announce(event)
    })()
    pending.set(dedupe, work)
    try {
      await work
    } finally {
      if (pending.get(dedupe) === work) pending.delete(dedupe)
    }
    return true
  }

  const rateLimit: RequestHandler = (req, res, next) => {
    const waitMs = budget.charge(clientKey(req.ip), now())
    if (waitMs === 0) return next()
    res.setHeader('retry-after', String(Math.max(1, Math.ceil(waitMs / 1000))))
    throw new SaikuHttpError('rate_limited', 'Too many secret scanning alerts from this address. Retry later.')
  }

  const handle = (req: Request, res: Response, next: NextFunction): void => {
    ;(async () => {
      const identifier = req.get('github-public-key-identifier')
      const signature = req.get('github-public-key-signature')
      if (identifier === undefined || signature === undefined)
        throw new SaikuHttpError(
          'unauthorized',
          'Send the alert with Github-Public-Key-Identifier and Github-Public-Key-Signature.',
        )
      const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0)
      const refused = () =>
        new SaikuHttpError('unauthorized', "The signature does not verify with GitHub's secret scanning keys.")
      if (!IDENTIFIER.test(identifier) || !SIGNATURE.test(signature)) throw refused()
      let publicKey: KeyObject | null
      try {
        publicKey = await keyring.find(identifier)
      } catch (error) {
        logger.error({ msg: 'secret scanning keys unavailable', err: { message: (error as Error).message } })
        res.setHeader('retry-after', '60')
        throw new SaikuHttpError(
          'service_unavailable',
          "GitHub's secret scanning keys could not be fetched. Retry later.",
        )
      }
      let verified = false
      try {
        verified =
          publicKey !== null &&
          verify('sha256', body, { key: publicKey, dsaEncoding: 'der' }, Buffer.from(signature, 'base64'))
      } catch {
        // A signature that is not DER: refused like a wrong one.
      }
      if (!verified) throw refused()
      let parsed: unknown
      try {
        parsed = JSON.parse(body.toString('utf8'))
      } catch {
        throw new SaikuHttpError('invalid_request', 'The body is not valid JSON.')
      }
      const reports = readReports(parsed, maxTokens)
      const ip = req.ip ?? null
      const verdicts: LeakVerdict[] = []
      // One at a time: an alert of a thousand real keys is a thousand store reads in a row, never at once.
      for (const report of reports) {
        const tokenHash = sha256Hex(report.token)
        const parsedKey = parseApiKey(report.token)
        const ours = parsedKey.ok && (await handleLeak(report, parsedKey.keyId, tokenHash, ip))
        verdicts.push({
          token_hash: tokenHash,
          token_type: report.type,
          label: ours ? 'true_positive' : 'false_positive',
        })
      }
      res.status(200).json(verdicts)
    })().catch(next)
  }

  const router = express.Router()
  router
    .route(SECRET_SCANNING_PATH)
    .post(
      rateLimit,
      // Read as bytes whatever the content type: the signature covers them exactly as sent.
      express.raw({ type: () => true, inflate: false, limit: options.maxBodyBytes ?? 512 * 1024 }),
      handle,
    )
    .all((_req, res) => {
      res.setHeader('allow', 'POST')
      throw new SaikuHttpError('method_not_allowed', 'Use POST on this resource.')
    })
  return router
}
