import type { NextConfig } from 'next'

const config: NextConfig = {
  // The route handlers run on Node.js: the core hashes keys with node:crypto.
  serverExternalPackages: ['@saiku/core', '@saiku/fetch'],
}

export default config
