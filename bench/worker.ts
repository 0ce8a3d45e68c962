// A measure that runs in fresh processes: the module forks itself with `worker` as its
// argument, sends the order, and waits for one answer.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

/** Runs `order` in a fresh process of the module at `moduleUrl`; `what` names it in the error. */
export async function inWorker<Result>(moduleUrl: string, order: object, what: string): Promise<Result> {
  const child = fork(fileURLToPath(moduleUrl), ['worker'], { execArgv: [], stdio: 'inherit' })
  // A worker that fails (an app answered other than 200) exits without answering: fail the run, never wait.
  const exited = once(child, 'exit').then(([code]) => {
    throw new Error(`${what}: a worker exited (${String(code)}) before it answered`)
  })
  exited.catch(() => {})
  child.send(order)
  const [result] = (await Promise.race([once(child, 'message'), exited])) as [Result]
  child.kill()
  return result
}
