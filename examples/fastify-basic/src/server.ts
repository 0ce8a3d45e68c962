import { MemoryKeyStore } from '@saiku/fastify'
import { serveDemo } from './demo.js'
import { createApp } from './app.js'

const store = new MemoryKeyStore()
await serveDemo(store, createApp(store))
