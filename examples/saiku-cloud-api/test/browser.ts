import { existsSync } from 'node:fs'
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
  if (process.env.CI === 'true')
    throw new Error(`CI must install Debian's chromium package (see .ci/run): ${CHROMIUM_PATH} is missing`)
  console.warn(
    `Skipping the browser tests: install Chromium at ${CHROMIUM_PATH} (Debian: apt-get install chromium) or set CHROMIUM_PATH.`,
  )
  return false
}

export interface Browser {
  /** A new context: its own cookies, storage and permissions, as a separate profile would have. */
  context(options?: BrowserContextOptions): Promise<BrowserContext>
  close(): Promise<void>
}

/**
 * One headless Chromium on a fresh, temporary user-data directory (Playwright
 * makes one per launch and removes it on close); each test gets its own context.
 */
export async function launchBrowser(): Promise<Browser> {
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: FLAGS, headless: true })
  return {
    context: (options = {}) => browser.newContext(options),
    close: () => browser.close(),
  }
}
