import { MemoryKeyStore } from '@saiku/koa'
import { serveDemo } from './demo.js'
import { createApp } from './app.js'

const store = new MemoryKeyStore()
const handle = createApp(store).callback()
// Koa answers its own errors: the promise its handler returns never rejects.
await serveDemo('Koa', store, (req, res) => void handle(req, res))
