import { availableParallelism } from 'node:os'

// scrypt runs on libuv's thread pool, which the PostgreSQL driver's SCRAM
// handshake (WebCrypto), DNS lookups and file I/O share. Unbounded, a sign-in
// flood queues hundreds of 64-MiB hashes there, and every new database
// connection waits behind them. Password checks therefore run under one
// process-wide bound that leaves the rest of the pool free.

/** libuv's default pool size, used when UV_THREADPOOL_SIZE is unset or unreadable. */
const DEFAULT_THREADPOOL_SIZE = 4

/** Threads left to everything else: at least two, so one slow job cannot block the others. */
const THREADS_KEPT_FREE = 2

/**
 * Password checks that may run at once: the pool's threads less those kept
 * free, and no more than the CPUs less one (each hash keeps a CPU busy for a
 * good part of a second; the event loop needs one too); at least 1.
 */
export function passwordCheckConcurrency(
  env: NodeJS.ProcessEnv = process.env,
  cpus: number = availableParallelism(),
): number {
  const value = env.UV_THREADPOOL_SIZE
  const size = value !== undefined && /^\d{1,4}$/.test(value) ? Number(value) : DEFAULT_THREADPOOL_SIZE
  // libuv clamps the pool to 1..1024 itself.
  const threads = Math.min(1024, Math.max(1, size || DEFAULT_THREADPOOL_SIZE))
  return Math.max(1, Math.min(threads - THREADS_KEPT_FREE, cpus - 1))
}

export interface PasswordGateOptions {
  /** Checks running at once. */
  readonly concurrency: number
  /** Checks waiting for a place; past it a check is refused at once. */
  readonly queueLength: number
}

export interface PasswordGateStats {
  readonly running: number
  readonly waiting: number
  /** Checks refused because the gate and its queue were full, since start. */
  readonly refused: number
}

/** A semaphore with a short queue: `run` answers `null` at once when both are full. */
export class PasswordGate {
  readonly #concurrency: number
  readonly #queueLength: number
  readonly #waiting: (() => void)[] = []
  #running = 0
  #refused = 0

  constructor(options: PasswordGateOptions) {
    for (const [name, value] of Object.entries(options)) {
      if (!Number.isSafeInteger(value) || value < (name === 'queueLength' ? 0 : 1))
        throw new RangeError(`password gate ${name}: expected a whole number, got ${String(value)}`)
    }
    this.#concurrency = options.concurrency
    this.#queueLength = options.queueLength
  }

  get stats(): PasswordGateStats {
    return { running: this.#running, waiting: this.#waiting.length, refused: this.#refused }
  }

  /**
   * Runs `work` when a place is free; `null` (and `work` never called) when the queue is full too.
   * Once `signal` aborts (the client went away) a check still waiting leaves the queue at once and
   * rejects with the signal's reason, `work` never called: nobody is left to answer.
   */
  run<T>(work: () => Promise<T>, signal?: AbortSignal): Promise<{ readonly value: T }> | null {
    if (this.#running >= this.#concurrency && this.#waiting.length >= this.#queueLength) {
      this.#refused++
      return null
    }
    return this.#run(work, signal)
  }

  async #run<T>(work: () => Promise<T>, signal: AbortSignal | undefined): Promise<{ readonly value: T }> {
    if (this.#running >= this.#concurrency) await this.#wait(signal)
    else this.#running++
    try {
      // Handed a place just as the client left: pass it on without the work.
      signal?.throwIfAborted()
      return { value: await work() }
    } finally {
      // The place passes straight to the next in line, so `running` never dips and a newcomer cannot jump the queue.
      const next = this.#waiting.shift()
      if (next === undefined) this.#running--
      else next()
    }
  }

  /** Resolves when a place is handed over; rejects, out of the queue, when `signal` aborts first. */
  #wait(signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(abortReason(signal))
      const onAbort = () => {
        const index = this.#waiting.indexOf(handOver)
        if (index === -1) return
        this.#waiting.splice(index, 1)
        reject(abortReason(signal!))
      }
      const handOver = () => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }
      this.#waiting.push(handOver)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }
}

/** The signal's reason (what `abort()` gave, a DOMException by default) as an Error. */
const abortReason = (signal: AbortSignal): Error =>
  signal.reason instanceof Error ? signal.reason : new Error('aborted', { cause: signal.reason })
