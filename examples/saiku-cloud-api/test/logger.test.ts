import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createLogger, createLogOutput } from '../src/logger.js'

/** A stream standing for a pipe whose reader stopped: it completes no write until `release()`, then every write. */
function stalledStream() {
  const chunks: string[] = []
  let held: (() => void) | undefined
  let reading = false
  const stream = new Writable({
    decodeStrings: false,
    write(chunk: string, _encoding, done) {
      chunks.push(chunk)
      if (reading) done()
      else held = done
    },
  })
  return {
    stream,
    chunks,
    release() {
      reading = true
      held?.()
    },
  }
}

describe('the log output', () => {
  it('drops and counts the lines past its buffer bound while the reader is stalled, then says how many it dropped', async () => {
    const pipe = stalledStream()
    const output = createLogOutput(pipe.stream, 1_000)
    const logger = createLogger('info', output)
    for (let i = 0; i < 100; i++) logger.info({ msg: 'request', i })
    // Each line is about 70 characters: what fits in 1,000 is queued, the rest counted.
    expect(output.droppedLines).toBeGreaterThan(80)
    expect(pipe.stream.writableLength).toBeLessThanOrEqual(1_000)
    const dropped = output.droppedLines

    pipe.release()
    expect(await output.flush(10_000)).toBe(true)
    logger.info({ msg: 'after' })
    const lines = pipe.chunks
      .join('')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(lines.slice(-2)).toMatchObject([
      { level: 40, msg: 'log lines dropped', count: dropped },
      { level: 30, msg: 'after' },
    ])
    expect(lines).toHaveLength(100 - dropped + 2)
    expect(output.droppedLines).toBe(dropped)
  })

  it('gives up flushing after the bound when nothing drains, and flushes at once when the reader catches up', async () => {
    const pipe = stalledStream()
    const output = createLogOutput(pipe.stream)
    createLogger('info', output).info({ msg: 'stopped' })
    expect(await output.flush(50)).toBe(false)

    const flushed = output.flush(60_000)
    pipe.release()
    expect(await flushed).toBe(true)
    expect(await output.flush(50)).toBe(true)
  })

  it('survives a reader that went away (EPIPE): the write fails, later lines are counted as dropped, nothing throws', async () => {
    const stream = new Writable({
      write(_chunk, _encoding, done) {
        done(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))
      },
    })
    const output = createLogOutput(stream)
    const logger = createLogger('info', output)
    logger.info({ msg: 'first' })
    await new Promise((resolve) => setImmediate(resolve))
    logger.info({ msg: 'second' })
    logger.info({ msg: 'third' })
    expect(output.droppedLines).toBe(2)
    expect(await output.flush(50)).toBe(false)
  })
})
