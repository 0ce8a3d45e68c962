import cors from 'cors'
import express from 'express'
import { saikuAuth, type KeyStore } from '@saiku/express'

// When the CORS layer has to come after the middleware (it sits in a router, say):
// preflight: 'pass' lets a browser's preflight through to it, unauthenticated and uncounted.
export function createApp(store: KeyStore): express.Express {
  const app = express()
  app.use(saikuAuth(store, { preflight: 'pass' }))
  app.use(
    cors({
      origin: ['https://app.example.com'],
      allowedHeaders: ['Authorization', 'Content-Type'],
      exposedHeaders: ['RateLimit', 'RateLimit-Policy', 'Retry-After'],
    }),
  )
  app.get('/me/tenant', (req, res) => {
    res.json(req.saiku!.tenant)
  })
  return app
}
