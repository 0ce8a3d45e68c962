import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext, type BrowserContextOptions } from 'playwright-core'

/** Debian's Chromium: `.ci/run` installs the `chromium` package. Never a downloaded browser. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH || '/usr/bin/chromium'

const FLAGS = [
  '--no-sandbox',
  '--headless',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/**
 * Whether the browser tests can run. In CI a missing Chromium fails the run; on
 * a developer machine the browser tests skip, saying how to run them.
 */
export function hasChromium(): boolean {
  if (existsSync(CHROMIUM_PATH)) return true
  if (process.env.CI === 'true') throw new Error(`CI must install Debian's chromium package (see .ci/run): ${CHROMIUM_PATH} is missing`)
  console.warn(`Skipping the browser tests: install Chromium at ${CHROMIUM_PATH} (Debian: apt-get install chromium) or set CHROMIUM_PATH.`)
  return false
}

export interface Browser {
  /** A new context on a fresh profile: its own cookies, storage and permissions. */
  context(options?: BrowserContextOptions): Promise<BrowserContext>
  close(): Promise<void>
}

/** Headless Chromium with a fresh user-data directory, removed on close. */
export async function launchBrowser(): Promise<Browser> {
  const contexts: { context: BrowserContext; dir: string }[] = []
  return {
    async context(options = {}) {
      const dir = mkdtempSync(join(tmpdir(), 'saiku-chromium-'))
      const context = await chromium.launchPersistentContext(dir, { executablePath: CHROMIUM_PATH, args: FLAGS, headless: true, ...options })
      contexts.push({ context, dir })
      return context
    },
    async close() {
      for (const { context, dir } of contexts.splice(0)) {
        await context.close().catch(() => {})
        rmSync(dir, { recursive: true, force: true })
      }
    },
  }
}
