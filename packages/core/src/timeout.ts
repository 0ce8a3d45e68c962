import { asStoreError, SaikuStoreError, type StoreSource } from './errors.js'

/**
 * Settles with the promise, or rejects with a timed-out SaikuStoreError after
 * `timeoutMs`; any other rejection becomes a SaikuStoreError carrying its cause.
 */
export function withTimeout<T>(promise: Promise<T>, timeoutMs: number, source: StoreSource, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new SaikuStoreError(source, `${what} did not answer within ${timeoutMs} ms`, { timedOut: true }))
    }, timeoutMs)
    timer.unref?.()
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(asStoreError(error, source, `${what} failed`))
      },
    )
  })
}
