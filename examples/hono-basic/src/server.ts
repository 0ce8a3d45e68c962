import { MemoryKeyStore } from '@saiku/fetch'
import { serveDemo } from './demo.js'
import { createApp } from './app.js'

const store = new MemoryKeyStore()
await serveDemo(store, createApp(store))
