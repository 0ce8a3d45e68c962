import { MemoryKeyStore } from '@saiku/express'
import { serveDemo } from './demo.js'
import { createApp } from './app.js'

const store = new MemoryKeyStore()
await serveDemo('Express', store, createApp(store))
