import { MemoryKeyStore } from '@saiku/node'
import { serveDemo } from './demo.js'
import { createApp } from './app.js'

const store = new MemoryKeyStore()
await serveDemo('node:http', store, createApp(store))
