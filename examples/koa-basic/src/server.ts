import { MemoryKeyStore } from '@saiku/koa'
import { serveDemo } from './demo.js'
import { createApp } from './app.js'

const store = new MemoryKeyStore()
await serveDemo('Koa', store, createApp(store).callback())
